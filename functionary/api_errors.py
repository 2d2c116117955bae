"""The API's error shape: JSON ``{"code": ..., "message": ...}`` with a 4xx.

Shared by the read API, ``POST /tx`` and the exchange API so that a refusal of
the same transaction reads the same whichever path it came in on."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from .mempool import AlreadyInMempool, MempoolConflict, MempoolError, TxRejected


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def mempool_rejection(e: MempoolError) -> ApiError:
    """The 4xx for a transaction the mempool refused: the consensus rule's
    name for a rule broken, 409 for a conflict or a duplicate."""
    if isinstance(e, TxRejected):
        return ApiError(400, e.reason, str(e))
    if isinstance(e, MempoolConflict):
        return ApiError(409, "txn-mempool-conflict", str(e))
    if isinstance(e, AlreadyInMempool):
        return ApiError(409, "txn-already-in-mempool", str(e))
    return ApiError(400, type(e).__name__, str(e))
