"""Exchange API: peg-outs submitted by registered exchanges, authenticated.

``POST /pegouts`` takes ``{"tx": "<hex>"}``, a signed sidechain transaction
with at least one peg-out output, from an exchange registered in the
federation file (``"exchanges": [{"id", "api_pubkey", ...}]``). There is no
shared secret: each exchange holds an Ed25519 key and signs every request.

    header                  value
    X-Exchange-Id           the exchange's id
    X-Exchange-Timestamp    unix time in seconds (decimal), within 300 s of ours
    X-Exchange-Signature    Ed25519 signature, 128 hex digits
    Idempotency-Key         optional, 1-64 of A-Z a-z 0-9 _ . : -

The signature covers these lines, joined by "\\n" (UTF-8):

    functionary-exchange-request/1
    <chain id, hex>              so a request for one federation is void at another
    <exchange id>
    <method>                     POST
    <path>                       with the query string, if any
    <timestamp>                  exactly as sent
    <idempotency key>            an empty line when there is none
    <SHA-256 of the body, hex>

Order of checks, cheapest refusal first: body size (413, unread), headers,
exchange, time window, signature (401), the exchange's rate limit (429), then
the idempotency key (a retry gets the first answer), replay (401), the body
(400/422) and the mempool (the same 4xx as ``POST /tx``). Unauthenticated
requests never spend an exchange's budget, so nobody can exhaust it in its name.

``POST /tx`` refuses transactions with peg-out outputs while exchanges are
registered: on such a federation a peg-out enters only through here.

Idempotency answers are kept in memory for a day. After a restart a retry is
answered from the chain instead: the same transaction cannot be accepted
twice, so it gets 200 with status "already_received" or "in_block".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from consensus.errors import ParseError
from consensus.standard import parse_pegout
from consensus.transaction import Transaction

from . import api_views as views
from .api_errors import ApiError, mempool_rejection
from .config import ExchangeInfo
from .errors import (
    BadSignature,
    BodyTooLarge,
    ExchangeApiError,
    IdempotencyKeyReused,
    InvalidPegoutRequest,
    MissingAuthentication,
    NoPegout,
    RateLimited,
    ReplayedRequest,
    StaleTimestamp,
    UnknownExchange,
)
from .log import event as log_event
from .mempool import AlreadyInMempool, MempoolError

if TYPE_CHECKING:
    from .node import FunctionaryNode

log = logging.getLogger("functionary.exchange")

SIGNING_TAG = "functionary-exchange-request/1"
TIME_WINDOW = 300.0
"""Seconds a request's timestamp may differ from the member's clock."""
MAX_PEGOUT_BODY = 2_100_000
"""Bytes: a 1 MB transaction in hex, in a small JSON object."""
IDEMPOTENCY_TTL = 24 * 3600.0
IDEMPOTENCY_PER_EXCHANGE = 10_000
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")

HEADER_ID = "X-Exchange-Id"
HEADER_TIMESTAMP = "X-Exchange-Timestamp"
HEADER_SIGNATURE = "X-Exchange-Signature"
HEADER_IDEMPOTENCY = "Idempotency-Key"


def signed_message(
    chain_id: bytes, exchange_id: str, method: str, path: str, timestamp: str, idempotency_key: str, body: bytes
) -> bytes:
    """The bytes an exchange signs for one request (see the module docstring)."""
    lines = (
        SIGNING_TAG,
        chain_id.hex(),
        exchange_id,
        method.upper(),
        path,
        timestamp,
        idempotency_key,
        hashlib.sha256(body).hexdigest(),
    )
    return "\n".join(lines).encode()


def sign_request(
    key: SigningKey,
    chain_id: bytes,
    exchange_id: str,
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/pegouts",
    timestamp: int | None = None,
    idempotency_key: str = "",
) -> dict[str, str]:
    """The headers that authenticate ``body`` as ``exchange_id``'s request."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    msg = signed_message(chain_id, exchange_id, method, path, ts, idempotency_key, body)
    headers = {
        HEADER_ID: exchange_id,
        HEADER_TIMESTAMP: ts,
        HEADER_SIGNATURE: key.sign(msg).signature.hex(),
    }
    if idempotency_key:
        headers[HEADER_IDEMPOTENCY] = idempotency_key
    return headers


# --- The gate: authentication, replay, rate limits, idempotency (no I/O) -----------------


@dataclass
class _Bucket:
    """A token bucket: ``burst`` requests at once, refilled at ``rate`` per second."""

    rate: float
    capacity: float
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """0 if a token was taken, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class Answer:
    """A response remembered under an idempotency key."""

    body_hash: bytes
    status: int
    content: dict[str, Any]
    expires: float


@dataclass(frozen=True)
class Authenticated:
    exchange: ExchangeInfo
    signature: bytes
    idempotency_key: str
    body_hash: bytes


@dataclass
class ExchangeGate:
    """Decides who is asking and whether to answer, with the time passed in.

    The replay cache holds each accepted signature until its timestamp can no
    longer pass the window (arrival + 2 windows); rate limits bound how many
    that can be. Idempotency answers live a day, at most
    ``IDEMPOTENCY_PER_EXCHANGE`` per exchange (oldest dropped first)."""

    chain_id: bytes
    exchanges: dict[str, ExchangeInfo]
    window: float = TIME_WINDOW
    _keys: dict[str, VerifyKey] = field(default_factory=dict)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _seen: dict[bytes, float] = field(default_factory=dict)
    _seen_order: deque[tuple[float, bytes]] = field(default_factory=deque)
    _answers: dict[str, OrderedDict[str, Answer]] = field(default_factory=dict)

    @classmethod
    def for_exchanges(cls, chain_id: bytes, exchanges: tuple[ExchangeInfo, ...]) -> ExchangeGate:
        return cls(chain_id, {e.id: e for e in exchanges})

    def authenticate(
        self, method: str, path: str, headers: dict[str, str | None], body: bytes, now: float
    ) -> Authenticated:
        """Who sent this request, proven; raises an ExchangeAuthError otherwise."""
        ident, ts, sig_hex = headers.get(HEADER_ID), headers.get(HEADER_TIMESTAMP), headers.get(HEADER_SIGNATURE)
        idem = headers.get(HEADER_IDEMPOTENCY) or ""
        if not ident or not ts or not sig_hex:
            missing = [h for h, v in ((HEADER_ID, ident), (HEADER_TIMESTAMP, ts), (HEADER_SIGNATURE, sig_hex)) if not v]
            raise MissingAuthentication(f"missing header(s): {', '.join(missing)}")
        if not _TIMESTAMP.fullmatch(ts):
            raise MissingAuthentication(f"{HEADER_TIMESTAMP}: unix time in seconds, decimal")
        if not _SIGNATURE.fullmatch(sig_hex):
            raise MissingAuthentication(f"{HEADER_SIGNATURE}: an Ed25519 signature, 128 hex digits")
        if idem and not IDEMPOTENCY_KEY.fullmatch(idem):
            raise MissingAuthentication(f"{HEADER_IDEMPOTENCY}: 1 to 64 of A-Z a-z 0-9 _ . : -")
        exchange = self.exchanges.get(ident)
        if exchange is None:
            raise UnknownExchange("no exchange registered under that id")
        if abs(now - int(ts)) > self.window:
            raise StaleTimestamp(f"timestamp {ts} is more than {int(self.window)} s from the member's clock")
        signature = bytes.fromhex(sig_hex)
        message = signed_message(self.chain_id, ident, method, path, ts, idem, body)
        try:
            self._verify_key(exchange).verify(message, signature)
        except (BadSignatureError, ValueError):
            raise BadSignature("the signature does not verify under the exchange's key") from None
        return Authenticated(exchange, signature, idem, hashlib.sha256(body).digest())

    def _verify_key(self, exchange: ExchangeInfo) -> VerifyKey:
        key = self._keys.get(exchange.id)
        if key is None:
            key = self._keys[exchange.id] = VerifyKey(exchange.api_pubkey)
        return key

    def charge(self, exchange: ExchangeInfo, now: float) -> None:
        """Spend one request of the exchange's budget; RateLimited if none is left."""
        bucket = self._buckets.get(exchange.id)
        if bucket is None:
            rate = exchange.requests_per_minute / 60.0
            bucket = self._buckets[exchange.id] = _Bucket(rate, float(exchange.burst), float(exchange.burst), now)
        wait = bucket.take(now)
        if wait > 0:
            raise RateLimited(
                f"over {exchange.requests_per_minute} requests per minute (burst {exchange.burst})", retry_after=wait
            )

    def remembered(self, auth: Authenticated, now: float) -> Answer | None:
        """The first answer to this idempotency key, if there is one."""
        if not auth.idempotency_key:
            return None
        answers = self._answers.get(auth.exchange.id)
        answer = answers.get(auth.idempotency_key) if answers else None
        if answer is None or answer.expires <= now:
            return None
        if answer.body_hash != auth.body_hash:
            raise IdempotencyKeyReused("this idempotency key was used with another request body")
        return answer

    def check_replay(self, auth: Authenticated, now: float) -> None:
        """Refuse a signature accepted before; remember this one."""
        while self._seen_order and self._seen_order[0][0] <= now:
            _, old = self._seen_order.popleft()
            if self._seen.get(old, now + 1) <= now:
                del self._seen[old]
        if auth.signature in self._seen:
            raise ReplayedRequest("this signed request was already received")
        expires = now + 2 * self.window
        self._seen[auth.signature] = expires
        self._seen_order.append((expires, auth.signature))

    def remember(self, auth: Authenticated, status: int, content: dict[str, Any], now: float) -> None:
        if not auth.idempotency_key:
            return
        answers = self._answers.setdefault(auth.exchange.id, OrderedDict())
        answers[auth.idempotency_key] = Answer(auth.body_hash, status, content, now + IDEMPOTENCY_TTL)
        answers.move_to_end(auth.idempotency_key)
        while len(answers) > IDEMPOTENCY_PER_EXCHANGE:
            answers.popitem(last=False)


# --- The request body -------------------------------------------------------------------


def parse_pegout_request(body: bytes) -> Transaction:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise InvalidPegoutRequest('the body must be JSON: {"tx": "<hex>"}') from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tx"), str) or set(doc) != {"tx"}:
        raise InvalidPegoutRequest('the body must be exactly {"tx": "<hex>"}')
    try:
        return Transaction.parse(bytes.fromhex(doc["tx"]))
    except ValueError:
        raise InvalidPegoutRequest("tx: not hex") from None
    except ParseError as e:
        raise InvalidPegoutRequest(f"tx: not an Elements transaction ({e})") from None


def pegout_vouts(tx: Transaction) -> list[int]:
    return [i for i, out in enumerate(tx.outputs) if parse_pegout(out.script_pubkey) is not None]


def has_pegout(tx: Transaction) -> bool:
    return any(parse_pegout(out.script_pubkey) is not None for out in tx.outputs)


# --- The route --------------------------------------------------------------------------


_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["tx"],
                    "additionalProperties": False,
                    "properties": {"tx": {"type": "string", "description": "the signed transaction, hex"}},
                }
            }
        },
    }
}


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, refusing (unread) anything declared or found longer than ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge(f"the body limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body limit is {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def mount_exchange_api(app: FastAPI, node: FunctionaryNode, clock: Callable[[], float] = time.time) -> None:
    """Add ``POST /pegouts`` to ``app``; ``clock`` is injectable for tests."""
    fed = node.federation
    gate = ExchangeGate.for_exchanges(fed.chain_id, fed.exchanges)
    app.state.exchange_gate = gate
    app.state.pegouts_need_exchange = bool(fed.exchanges)
    parent = fed.peg.params.parent if fed.peg is not None else None
    in_flight: dict[tuple[str, str], tuple[bytes, asyncio.Future[tuple[int, dict[str, Any]]]]] = {}

    def _refusal(e: ExchangeApiError) -> ApiError:
        headers = {"Retry-After": str(max(1, round(e.retry_after)))} if isinstance(e, RateLimited) else None
        return ApiError(e.status, e.code, str(e), headers)

    def _accepted(exchange: ExchangeInfo, tx: Transaction, status: str) -> dict[str, Any]:
        txid = tx.txid_hex
        pegouts = []
        for vout in pegout_vouts(tx):
            out = tx.outputs[vout]
            pegouts.append(
                {
                    "id": f"{txid}:{vout}",
                    "vout": vout,
                    "value": out.value.amount if out.value.is_explicit else None,
                    **(views.vout_json(out, parent)["pegout"] or {}),
                    "status_url": f"/pegouts/{txid}:{vout}",
                }
            )
        return {"exchange": exchange.id, "txid": txid, "status": status, "pegouts": pegouts}

    async def _submit(exchange: ExchangeInfo, body: bytes) -> tuple[int, dict[str, Any]]:
        tx = parse_pegout_request(body)
        if not has_pegout(tx):
            raise NoPegout("the transaction has no peg-out output; send other transactions to POST /tx")
        if await asyncio.to_thread(node.storage.tx_location, tx.txid) is not None:
            return 200, _accepted(exchange, tx, "in_block")
        try:
            await node.submit_transaction(tx)
        except AlreadyInMempool:
            return 200, _accepted(exchange, tx, "already_received")
        except MempoolError as e:
            raise mempool_rejection(e) from None
        log_event(log, "pegout_submitted", exchange=exchange.id, txid=tx.txid_hex, pegouts=len(pegout_vouts(tx)))
        return 202, _accepted(exchange, tx, "received")

    async def _answer(auth: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            return await _submit(auth.exchange, body)
        except ExchangeApiError as e:
            err = _refusal(e)
        except ApiError as e:
            err = e
        return err.status, {"code": err.code, "message": err.message}

    @app.post(
        "/pegouts",
        status_code=202,
        openapi_extra=_OPENAPI_BODY,
        responses={
            200: {"description": "already received or already in a block (the same answer)"},
            400: {"description": "not a transaction, or a consensus rule broken"},
            401: {"description": "not authenticated as a registered exchange"},
            409: {"description": "conflicts with a transaction in the mempool"},
            413: {"description": "body over the limit"},
            422: {"description": "no peg-out output, or an idempotency key reused"},
            429: {"description": "over the exchange's rate limit"},
        },
    )
    async def post_pegouts(
        request: Request,
        x_exchange_id: str | None = Header(None),
        x_exchange_timestamp: str | None = Header(None),
        x_exchange_signature: str | None = Header(None),
        idempotency_key: str | None = Header(None),
    ) -> JSONResponse:
        """Submit a signed peg-out transaction as a registered exchange."""
        headers = {
            HEADER_ID: x_exchange_id,
            HEADER_TIMESTAMP: x_exchange_timestamp,
            HEADER_SIGNATURE: x_exchange_signature,
            HEADER_IDEMPOTENCY: idempotency_key,
        }
        try:
            body = await _read_capped(request, MAX_PEGOUT_BODY)
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            now = clock()
            auth = gate.authenticate(request.method, path, headers, body, now)
            gate.charge(auth.exchange, now)
            first = gate.remembered(auth, now)
            if first is not None:
                return JSONResponse(first.content, status_code=first.status)
            slot = (auth.exchange.id, auth.idempotency_key)
            pending = in_flight.get(slot) if auth.idempotency_key else None
            if pending is not None:
                # The same key while the first request is still being answered:
                # wait for that answer rather than submitting twice.
                if pending[0] != auth.body_hash:
                    raise IdempotencyKeyReused("this idempotency key was used with another request body")
                status, content = await asyncio.shield(pending[1])
                return JSONResponse(content, status_code=status)
            gate.check_replay(auth, now)
        except ExchangeApiError as e:
            raise _refusal(e) from None
        future: asyncio.Future[tuple[int, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        if auth.idempotency_key:
            in_flight[slot] = (auth.body_hash, future)
        try:
            status, content = await _answer(auth, body)
            gate.remember(auth, status, content, clock())
            future.set_result((status, content))
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            if auth.idempotency_key:
                in_flight.pop(slot, None)
        return JSONResponse(content, status_code=status)
