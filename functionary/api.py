"""The member's HTTP API (FastAPI).

Read paths follow Esplora's shapes (text for heights and hashes, hex for raw
data) so existing tooling works; ``/status`` is this project's own. Every error
is JSON ``{"code": ..., "message": ...}`` with a 4xx status.

    GET  /blocks/tip/height        text
    GET  /blocks/tip/hash          text
    GET  /block-height/:height     text (block hash)
    GET  /block/:hash/header       hex of the full header, proof included
    GET  /block/:hash/raw          the raw block (binary)
    GET  /block/:hash/txids        JSON list of txids
    GET  /tx/:txid/hex             the raw transaction, hex
    POST /tx                       raw transaction hex -> txid text
    GET  /status                   JSON: tip, round, peers, last blocks and signers
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from consensus.block import Block
from consensus.errors import ParseError
from consensus.header import BlockHeader
from consensus.serialize import ByteReader
from consensus.transaction import Transaction

from .mempool import AlreadyInMempool, MempoolConflict, MempoolError, TxRejected

if TYPE_CHECKING:
    from .node import FunctionaryNode

MAX_TX_BODY = 1_000_000


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _parse_hash(value: str) -> bytes:
    if len(value) != 64:
        raise ApiError(400, "InvalidHash", "a hash is 64 hex digits")
    try:
        return bytes.fromhex(value)[::-1]
    except ValueError:
        raise ApiError(400, "InvalidHash", "a hash is 64 hex digits") from None


def create_app(node: FunctionaryNode) -> FastAPI:
    app = FastAPI(title="Federation member API", version="0.1.0")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.code, e.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        return _error(400, "InvalidRequest", str(e.errors()[:3]))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(e.status_code, "HttpError")
        return _error(e.status_code, code, str(e.detail))

    @app.get("/blocks/tip/height", response_class=PlainTextResponse)
    async def tip_height() -> str:
        return str(node.chain.tip_height)

    @app.get("/blocks/tip/hash", response_class=PlainTextResponse)
    async def tip_hash() -> str:
        return node.chain.tip_hash[::-1].hex()

    @app.get("/block-height/{height}", response_class=PlainTextResponse)
    async def block_height(height: str) -> str:
        if not height.isdigit() or len(height) > 10:
            raise ApiError(400, "InvalidHeight", "height is a non-negative integer")
        h = int(height)
        if h == 0:
            return node.chain.genesis.hash[::-1].hex()
        stored = await asyncio.to_thread(node.storage.block_by_height, h)
        if stored is None:
            raise ApiError(404, "BlockNotFound", f"no block at height {h}")
        return stored.hash[::-1].hex()

    @app.get("/block/{block_hash}/header", response_class=PlainTextResponse)
    async def block_header(block_hash: str) -> str:
        bh = _parse_hash(block_hash)
        if bh == node.chain.genesis.hash:
            return node.chain.genesis.header.serialize().hex()
        stored = await asyncio.to_thread(node.storage.block_by_hash, bh)
        if stored is None:
            raise ApiError(404, "BlockNotFound", f"no block {block_hash}")
        # Stored headers are parsed once more so only well-formed ones leave.
        return BlockHeader.read(ByteReader(stored.header)).serialize().hex()

    async def _stored_block(block_hash: str) -> bytes:
        bh = _parse_hash(block_hash)
        if bh == node.chain.genesis.hash:
            return node.chain.genesis.serialize()
        stored = await asyncio.to_thread(node.storage.block_by_hash, bh)
        if stored is None:
            raise ApiError(404, "BlockNotFound", f"no block {block_hash}")
        return stored.raw

    @app.get("/block/{block_hash}/raw")
    async def block_raw(block_hash: str) -> Response:
        return Response(await _stored_block(block_hash), media_type="application/octet-stream")

    @app.get("/block/{block_hash}/txids")
    async def block_txids(block_hash: str) -> list[str]:
        block = Block.parse(await _stored_block(block_hash))
        return [t[::-1].hex() for t in block.txids]

    @app.get("/tx/{txid}/hex", response_class=PlainTextResponse)
    async def tx_hex(txid: str) -> str:
        t = _parse_hash(txid)
        entry = next((e for e in node.mempool.entries() if e.txid == t), None)
        if entry is not None:
            return entry.tx.serialize().hex()
        loc = await asyncio.to_thread(node.storage.tx_location, t)
        if loc is None:
            raise ApiError(404, "TxNotFound", f"no transaction {txid}")
        height, pos = loc
        stored = await asyncio.to_thread(node.storage.block_by_height, height)
        if stored is None:
            raise ApiError(404, "TxNotFound", f"no transaction {txid}")
        return Block.parse(stored.raw).transactions[pos].serialize().hex()

    @app.post("/tx", response_class=PlainTextResponse)
    async def post_tx(request: Request) -> str:
        body = await request.body()
        if len(body) > 2 * MAX_TX_BODY:
            raise ApiError(413, "BodyTooLarge", "transaction body too large")
        try:
            raw = bytes.fromhex(body.decode("ascii").strip())
            tx = Transaction.parse(raw)
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "InvalidHex", "body must be the transaction in hex") from None
        except ParseError as e:
            raise ApiError(400, "ParseError", str(e)) from None
        try:
            entry = await node.submit_transaction(tx)
        except TxRejected as e:
            raise ApiError(400, e.reason, str(e)) from None
        except MempoolConflict as e:
            raise ApiError(409, "txn-mempool-conflict", str(e)) from None
        except AlreadyInMempool as e:
            raise ApiError(409, "txn-already-in-mempool", str(e)) from None
        except MempoolError as e:
            raise ApiError(400, type(e).__name__, str(e)) from None
        return entry.txid[::-1].hex()

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return node.status()

    return app
