"""Bitcoin Core's JSON-RPC, as the functionaries (and the tests) reach their bitcoind.

Speaks JSON-RPC 1.0 the way Bitcoin Core does over HTTP: ``POST /`` (or
``/wallet/<name>``) with HTTP Basic authentication, a body
``{"jsonrpc": "1.0", "id": n, "method": m, "params": [...] | {...}}``, and a reply
``{"result": r, "error": null | {"code": c, "message": s}, "id": n}``. Amounts
travel as exact JSON numbers: requests accept ``Decimal`` and replies are
parsed into ``Decimal`` (never float). Works against Bitcoin Core and against
the embedded regtest chain (``python -m regtest``) alike.

| what the server answers                    | raised                                     |
|--------------------------------------------|--------------------------------------------|
| 200 with ``error: null``                   | nothing: the result is returned            |
| 401 / 403                                  | RpcAuthError (cookie re-read and retried once) |
| 400/404/500 with a JSON error object       | RpcError subclass for the code (table below) |
| any other status, or a body that is not a  | RpcProtocolError                           |
| JSON-RPC reply, or a mismatched id         |                                            |
| no answer within ``timeout`` seconds       | RpcTimeout                                 |
| connection refused, reset, DNS failure     | RpcConnectionError                         |

| code   | Core's name                  | class                        |
|--------|------------------------------|------------------------------|
| -1     | RPC_MISC_ERROR               | RpcMiscError                 |
| -3     | RPC_TYPE_ERROR               | RpcTypeError                 |
| -4     | RPC_WALLET_ERROR             | RpcWalletError               |
| -5     | RPC_INVALID_ADDRESS_OR_KEY   | RpcInvalidAddressOrKey       |
| -6     | RPC_WALLET_INSUFFICIENT_FUNDS| RpcWalletInsufficientFunds   |
| -8     | RPC_INVALID_PARAMETER        | RpcInvalidParameter          |
| -18    | RPC_WALLET_NOT_FOUND         | RpcWalletNotFound            |
| -22    | RPC_DESERIALIZATION_ERROR    | RpcDeserializationError      |
| -25    | RPC_VERIFY_ERROR             | RpcVerifyError               |
| -26    | RPC_VERIFY_REJECTED          | RpcVerifyRejected            |
| -27    | RPC_VERIFY_ALREADY_IN_CHAIN  | RpcVerifyAlreadyInChain      |
| -28    | RPC_IN_WARMUP                | RpcInWarmup                  |
| -32600 | RPC_INVALID_REQUEST          | RpcInvalidRequest            |
| -32601 | RPC_METHOD_NOT_FOUND         | RpcMethodNotFound            |
| -32602 | RPC_INVALID_PARAMS           | RpcInvalidParams             |
| -32603 | RPC_INTERNAL_ERROR           | RpcInternalError             |
| -32700 | RPC_PARSE_ERROR              | RpcParseError                |

Any other code raises plain ``RpcError``. The tree (all under FunctionaryError)::

    MainchainError
    ├── RpcError(code, message)     the server answered with an error
    │   └── one class per code above
    ├── RpcAuthError                401/403
    ├── RpcTimeout                  no reply in time
    ├── RpcConnectionError          no connection
    └── RpcProtocolError            a reply that is not JSON-RPC

Mempool rejections (-26, and -25 for missing inputs) carry Core's reason
first, then ", " and details: ``RpcError.reject_reason`` is the part before.

Credentials: explicit ``user``/``password``, else ``user:password@`` in the URL,
else ``cookie_file`` (re-read when the server answers 401, since bitcoind
writes a new cookie each start).

Asyncio: ``AsyncBitcoinRpc`` has the same methods as coroutines over
``httpx.AsyncClient``. A sync client can also be used from a coroutine with
``await asyncio.to_thread(rpc.getblockcount)``; one client per thread, since
httpx clients are not shared across threads safely while a call is running.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

import httpx

from .errors import FunctionaryError

if TYPE_CHECKING:
    from .config import MainchainRpc

COIN = 100_000_000

# --- errors -----------------------------------------------------------------------------------


class MainchainError(FunctionaryError):
    """The mainchain node could not be used: unreachable, refusing us, or refusing the request."""


class RpcAuthError(MainchainError):
    """HTTP 401/403: wrong credentials, a stale cookie, or a method not whitelisted."""


class RpcTimeout(MainchainError):
    """No reply within the timeout (the call may still have taken effect)."""


class RpcConnectionError(MainchainError):
    """No connection: refused, reset, unresolvable, or closed mid-reply."""


class RpcProtocolError(MainchainError):
    """A reply that is not a JSON-RPC answer (wrong status, body, or id)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RpcError(MainchainError):
    """The server answered with an error object."""

    code_value: int | None = None  # set on the subclasses, one per code

    def __init__(self, code: int, message: str, method: str = "") -> None:
        super().__init__(f"{method}: {message} (code {code})" if method else f"{message} (code {code})")
        self.rpc_code = code
        self.message = message
        self.method = method

    @property
    def reject_reason(self) -> str:
        """Core's reject reason: the message up to its first ", " (details follow it)."""
        return self.message.split(", ", 1)[0]

    @staticmethod
    def for_code(code: int, message: str, method: str = "") -> RpcError:
        cls = _BY_CODE.get(code, RpcError)
        return cls(code, message, method)


class RpcMiscError(RpcError):
    code_value = -1


class RpcTypeError(RpcError):
    code_value = -3


class RpcWalletError(RpcError):
    code_value = -4


class RpcInvalidAddressOrKey(RpcError):
    code_value = -5


class RpcWalletInsufficientFunds(RpcError):
    code_value = -6


class RpcInvalidParameter(RpcError):
    code_value = -8


class RpcWalletNotFound(RpcError):
    code_value = -18


class RpcDeserializationError(RpcError):
    code_value = -22


class RpcVerifyError(RpcError):
    """-25: general failure submitting a transaction or block (missing inputs, fee above the cap)."""

    code_value = -25


class RpcVerifyRejected(RpcError):
    """-26: refused by consensus or policy; ``reject_reason`` says which rule."""

    code_value = -26


class RpcVerifyAlreadyInChain(RpcError):
    code_value = -27


class RpcInWarmup(RpcError):
    """-28: the node is still loading; try again shortly."""

    code_value = -28


class RpcInvalidRequest(RpcError):
    code_value = -32600


class RpcMethodNotFound(RpcError):
    code_value = -32601


class RpcInvalidParams(RpcError):
    code_value = -32602


class RpcInternalError(RpcError):
    code_value = -32603


class RpcParseError(RpcError):
    code_value = -32700


_BY_CODE: dict[int, type[RpcError]] = {
    cls.code_value: cls
    for cls in (
        RpcMiscError,
        RpcTypeError,
        RpcWalletError,
        RpcInvalidAddressOrKey,
        RpcWalletInsufficientFunds,
        RpcInvalidParameter,
        RpcWalletNotFound,
        RpcDeserializationError,
        RpcVerifyError,
        RpcVerifyRejected,
        RpcVerifyAlreadyInChain,
        RpcInWarmup,
        RpcInvalidRequest,
        RpcMethodNotFound,
        RpcInvalidParams,
        RpcInternalError,
        RpcParseError,
    )
    if cls.code_value is not None
}

# Reasons for a script failure, across Core versions (28/29 say (non-)mandatory, 30 says mempool/block).
SCRIPT_FAILURE_PREFIXES = (
    "mandatory-script-verify-flag-failed",
    "non-mandatory-script-verify-flag",
    "mempool-script-verify-flag-failed",
    "block-script-verify-flag-failed",
)


# --- amounts --------------------------------------------------------------------------------------


def btc(sats: int) -> Decimal:
    """Satoshis to a BTC amount for a request."""
    return (Decimal(sats) / COIN).quantize(Decimal("0.00000001"))


def sats(amount: Decimal | int | str) -> int:
    """A BTC amount from a reply to satoshis; ValueError for sub-satoshi precision."""
    value = Decimal(str(amount)) * COIN
    if value != value.to_integral_value():
        raise ValueError(f"{amount} BTC is not a whole number of satoshis")
    return int(value)


def _dumps(obj: Any) -> str:
    """JSON with Decimals as exact numbers (json.dumps would need floats)."""
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError("amounts must be finite")
        return format(obj, "f")
    if isinstance(obj, Mapping):
        return "{" + ",".join(json.dumps(str(k)) + ":" + _dumps(v) for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_dumps(v) for v in obj) + "]"
    return json.dumps(obj)


# --- result shapes (the keys this project reads; Core sends more) ---------------------------------


class EstimateSmartFee(TypedDict, total=False):
    feerate: Decimal  # BTC/kvB; absent when the node has no estimate
    errors: list[str]
    blocks: int


MempoolAcceptResult = TypedDict(
    "MempoolAcceptResult",
    {
        "txid": str,
        "wtxid": str,
        "allowed": bool,
        "vsize": int,
        "fees": dict[str, Any],
        "reject-reason": str,
        "reject-details": str,
    },
    total=False,
)


class Unspent(TypedDict, total=False):
    txid: str
    vout: int
    address: str
    label: str
    scriptPubKey: str
    amount: Decimal
    confirmations: int
    spendable: bool
    solvable: bool
    desc: str
    safe: bool


class TxOutInfo(TypedDict):
    bestblock: str
    confirmations: int
    value: Decimal
    scriptPubKey: dict[str, Any]
    coinbase: bool


# --- the shared protocol --------------------------------------------------------------------------


class _Protocol:
    """URL, credentials and reply interpretation, shared by the sync and async clients."""

    def __init__(
        self,
        url: str,
        user: str | None,
        password: str | None,
        cookie_file: Path | str | None,
        timeout: float,
        wallet: str | None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        url_user = urllib.parse.unquote(parts.username) if parts.username else None
        url_password = urllib.parse.unquote(parts.password) if parts.password else None
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port:
            netloc += f":{parts.port}"
        path = parts.path.rstrip("/")
        if wallet is not None:
            path += "/wallet/" + urllib.parse.quote(wallet, safe="")
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, path or "/", "", ""))
        self.user = user if user is not None else url_user
        self.password = password if password is not None else url_password
        self.cookie_file = Path(cookie_file) if cookie_file is not None else None
        if self.password is None and self.cookie_file is None:
            raise ValueError("give user and password (or put them in the URL), or a cookie file")
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._auth_header: str | None = None

    def auth_header(self, refresh: bool = False) -> str:
        if self._auth_header is None or refresh:
            if self.password is not None:
                creds = f"{self.user or ''}:{self.password}"
            else:
                assert self.cookie_file is not None
                try:
                    creds = self.cookie_file.read_text().strip()
                except OSError as e:
                    raise RpcAuthError(f"cannot read the cookie file {self.cookie_file}: {e}") from None
            self._auth_header = "Basic " + base64.b64encode(creds.encode()).decode()
        return self._auth_header

    def request(self, method: str, params: Sequence[Any] | Mapping[str, Any]) -> tuple[int, bytes]:
        req_id = next(self._ids)
        body = _dumps({"jsonrpc": "1.0", "id": req_id, "method": method, "params": params})
        return req_id, body.encode()

    def headers(self, refresh: bool = False) -> dict[str, str]:
        return {"Authorization": self.auth_header(refresh), "Content-Type": "application/json"}

    @staticmethod
    def interpret(method: str, req_id: int, status: int, content: bytes) -> Any:
        if status in (401, 403):
            raise RpcAuthError(f"{method}: HTTP {status}: the node refused our credentials")
        try:
            reply = json.loads(content.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError):
            snippet = content[:200].decode("utf-8", "replace")
            raise RpcProtocolError(
                f"{method}: HTTP {status} with a body that is not JSON: {snippet!r}", status
            ) from None
        if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
            raise RpcProtocolError(f"{method}: HTTP {status}: not a JSON-RPC reply", status)
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict) or not isinstance(error.get("code"), int):
                raise RpcProtocolError(f"{method}: malformed error object {error!r}", status)
            raise RpcError.for_code(error["code"], str(error.get("message", "")), method)
        if status != 200:
            raise RpcProtocolError(f"{method}: HTTP {status} without an error object", status)
        if reply.get("id") != req_id:
            raise RpcProtocolError(f"{method}: reply id {reply.get('id')!r} does not match request id {req_id}", status)
        return reply.get("result")


def _transport_error(method: str, url: str, e: httpx.HTTPError) -> MainchainError:
    if isinstance(e, httpx.TimeoutException):
        return RpcTimeout(f"{method}: no reply from {url} in time ({type(e).__name__})")
    return RpcConnectionError(f"{method}: cannot reach {url}: {type(e).__name__}: {e}")


def _password_from_config(cfg: MainchainRpc) -> str | None:
    if cfg.password_file is None:
        return None
    return cfg.password_file.read_text().strip()


# --- the sync client ------------------------------------------------------------------------------


class BitcoinRpc:
    """A synchronous client; thread-confined (one per thread). Use as a context manager or close()."""

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        cookie_file: Path | str | None = None,
        timeout: float = 30.0,
        wallet: str | None = None,
    ) -> None:
        self._p = _Protocol(url, user, password, cookie_file, timeout, wallet)
        self._client = httpx.Client(timeout=timeout)

    @classmethod
    def from_config(cls, cfg: MainchainRpc, wallet: str | None = None) -> BitcoinRpc:
        """From a member config's ``mainchain_rpc`` section."""
        return cls(
            cfg.url,
            user=cfg.user,
            password=_password_from_config(cfg),
            cookie_file=cfg.cookie_file,
            timeout=cfg.timeout,
            wallet=wallet,
        )

    @property
    def url(self) -> str:
        return self._p.url

    def with_wallet(self, wallet: str) -> BitcoinRpc:
        """A client for ``/wallet/<wallet>`` with the same credentials."""
        base = urllib.parse.urlsplit(self._p.url)
        root = base.path.split("/wallet/")[0]
        url = urllib.parse.urlunsplit((base.scheme, base.netloc, root or "/", "", ""))
        return BitcoinRpc(
            url,
            user=self._p.user,
            password=self._p.password,
            cookie_file=self._p.cookie_file,
            timeout=self._p.timeout,
            wallet=wallet,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> BitcoinRpc:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # --- calls ----------------------------------------------------------------------------------

    def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        """Call ``method`` with positional parameters; the result, or a MainchainError."""
        return self._call(method, list(params), timeout)

    def call_named(self, method: str, params: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        """Call ``method`` with named parameters (Core matches them to its argument names)."""
        return self._call(method, dict(params), timeout)

    def _call(self, method: str, params: list[Any] | dict[str, Any], timeout: float | None) -> Any:
        req_id, body = self._p.request(method, params)
        refresh = False
        for attempt in (1, 2):
            try:
                response = self._client.post(
                    self._p.url,
                    content=body,
                    headers=self._p.headers(refresh),
                    timeout=self._p.timeout if timeout is None else timeout,
                )
            except httpx.HTTPError as e:
                raise _transport_error(method, self._p.url, e) from e
            if response.status_code == 401 and self._p.cookie_file is not None and attempt == 1:
                refresh = True  # bitcoind rewrites its cookie at every start
                continue
            return self._p.interpret(method, req_id, response.status_code, response.content)
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.1) -> dict[str, Any]:
        """Poll getblockchaininfo until the node answers (not warming up, reachable)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.getblockchaininfo()
            except (RpcInWarmup, RpcConnectionError, RpcTimeout, RpcAuthError) as e:
                # A cookie may not be written yet when the process has just started.
                if time.monotonic() >= deadline:
                    raise RpcTimeout(f"the node at {self._p.url} was not ready within {timeout} s: {e}") from e
            time.sleep(interval)

    # --- blockchain ----------------------------------------------------------------------------------

    def getblockchaininfo(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("getblockchaininfo")
        return result

    def getblockcount(self) -> int:
        return int(self.call("getblockcount"))

    def getbestblockhash(self) -> str:
        return str(self.call("getbestblockhash"))

    def getblockhash(self, height: int) -> str:
        return str(self.call("getblockhash", height))

    @overload
    def getblockheader(self, blockhash: str, verbose: Literal[True] = ...) -> dict[str, Any]: ...
    @overload
    def getblockheader(self, blockhash: str, verbose: Literal[False]) -> str: ...
    def getblockheader(self, blockhash: str, verbose: bool = True) -> dict[str, Any] | str:
        result: dict[str, Any] | str = self.call("getblockheader", blockhash, verbose)
        return result

    @overload
    def getblock(self, blockhash: str, verbosity: Literal[0]) -> str: ...
    @overload
    def getblock(self, blockhash: str, verbosity: Literal[1, 2, 3] = ...) -> dict[str, Any]: ...
    def getblock(self, blockhash: str, verbosity: int = 1) -> dict[str, Any] | str:
        result: dict[str, Any] | str = self.call("getblock", blockhash, verbosity)
        return result

    def gettxout(self, txid: str, n: int, include_mempool: bool = True) -> TxOutInfo | None:
        result: TxOutInfo | None = self.call("gettxout", txid, n, include_mempool)
        return result

    def gettxoutproof(self, txids: Sequence[str], blockhash: str | None = None) -> str:
        if blockhash is None:
            return str(self.call("gettxoutproof", list(txids)))
        return str(self.call("gettxoutproof", list(txids), blockhash))

    def verifytxoutproof(self, proof: str) -> list[str]:
        return [str(t) for t in self.call("verifytxoutproof", proof)]

    def getrawmempool(self) -> list[str]:
        return [str(t) for t in self.call("getrawmempool", False)]

    def getrawmempool_verbose(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = self.call("getrawmempool", True)
        return result

    def getmempoolentry(self, txid: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("getmempoolentry", txid)
        return result

    def getmempoolinfo(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("getmempoolinfo")
        return result

    def invalidateblock(self, blockhash: str) -> None:
        self.call("invalidateblock", blockhash)

    def reconsiderblock(self, blockhash: str) -> None:
        self.call("reconsiderblock", blockhash)

    # --- raw transactions ---------------------------------------------------------------------------

    @overload
    def getrawtransaction(self, txid: str, verbose: Literal[False] = ..., blockhash: str | None = ...) -> str: ...
    @overload
    def getrawtransaction(self, txid: str, verbose: Literal[True], blockhash: str | None = ...) -> dict[str, Any]: ...
    def getrawtransaction(self, txid: str, verbose: bool = False, blockhash: str | None = None) -> str | dict[str, Any]:
        if blockhash is None:
            result: str | dict[str, Any] = self.call("getrawtransaction", txid, verbose)
        else:
            result = self.call("getrawtransaction", txid, verbose, blockhash)
        return result

    def sendrawtransaction(self, hexstring: str, maxfeerate: Decimal | None = None) -> str:
        """Broadcast; the txid. ``maxfeerate`` in BTC/kvB (Core's default 0.10; 0 for no cap)."""
        if maxfeerate is None:
            return str(self.call("sendrawtransaction", hexstring))
        return str(self.call("sendrawtransaction", hexstring, maxfeerate))

    def testmempoolaccept(self, rawtxs: Sequence[str], maxfeerate: Decimal | None = None) -> list[MempoolAcceptResult]:
        if maxfeerate is None:
            result: list[MempoolAcceptResult] = self.call("testmempoolaccept", list(rawtxs))
        else:
            result = self.call("testmempoolaccept", list(rawtxs), maxfeerate)
        return result

    def decoderawtransaction(self, hexstring: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("decoderawtransaction", hexstring)
        return result

    # --- mining and fees --------------------------------------------------------------------------------

    def generatetoaddress(self, nblocks: int, address: str, timeout: float | None = None) -> list[str]:
        # Mining many blocks can take longer than one ordinary call.
        limit = timeout if timeout is not None else max(self._p.timeout, 0.05 * nblocks + 10)
        return [str(h) for h in self.call("generatetoaddress", nblocks, address, timeout=limit)]

    def submitblock(self, hexdata: str) -> str | None:
        result = self.call("submitblock", hexdata)
        return None if result is None else str(result)

    def estimatesmartfee(self, conf_target: int, estimate_mode: str = "economical") -> EstimateSmartFee:
        result: EstimateSmartFee = self.call("estimatesmartfee", conf_target, estimate_mode)
        return result

    # --- network -------------------------------------------------------------------------------------

    def getnetworkinfo(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("getnetworkinfo")
        return result

    # --- wallet (use a client made with wallet=... when the node has several wallets) ----------------------

    def getnewaddress(self, label: str = "", address_type: str | None = None) -> str:
        if address_type is None:
            return str(self.call("getnewaddress", label))
        return str(self.call("getnewaddress", label, address_type))

    def sendtoaddress(
        self,
        address: str,
        amount: Decimal,
        *,
        subtractfeefromamount: bool = False,
        replaceable: bool | None = None,
        fee_rate: Decimal | int | None = None,
    ) -> str:
        """Pay ``amount`` BTC; the txid. ``fee_rate`` is in sat/vB (Core's argument)."""
        named: dict[str, Any] = {"address": address, "amount": amount}
        if subtractfeefromamount:
            named["subtractfeefromamount"] = True
        if replaceable is not None:
            named["replaceable"] = replaceable
        if fee_rate is not None:
            named["fee_rate"] = fee_rate
        return str(self.call_named("sendtoaddress", named))

    def getbalance(self) -> Decimal:
        return Decimal(self.call("getbalance"))

    def listunspent(
        self, minconf: int = 1, maxconf: int = 9_999_999, addresses: Sequence[str] | None = None
    ) -> list[Unspent]:
        if addresses is None:
            result: list[Unspent] = self.call("listunspent", minconf, maxconf)
        else:
            result = self.call("listunspent", minconf, maxconf, list(addresses))
        return result

    def getaddressinfo(self, address: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("getaddressinfo", address)
        return result


# --- the async client -------------------------------------------------------------------------------


class AsyncBitcoinRpc:
    """The same client for asyncio code, over ``httpx.AsyncClient``."""

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        cookie_file: Path | str | None = None,
        timeout: float = 30.0,
        wallet: str | None = None,
    ) -> None:
        self._p = _Protocol(url, user, password, cookie_file, timeout, wallet)
        self._client = httpx.AsyncClient(timeout=timeout)

    @classmethod
    def from_config(cls, cfg: MainchainRpc, wallet: str | None = None) -> AsyncBitcoinRpc:
        return cls(
            cfg.url,
            user=cfg.user,
            password=_password_from_config(cfg),
            cookie_file=cfg.cookie_file,
            timeout=cfg.timeout,
            wallet=wallet,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncBitcoinRpc:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        return await self._call(method, list(params), timeout)

    async def call_named(self, method: str, params: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        return await self._call(method, dict(params), timeout)

    async def _call(self, method: str, params: list[Any] | dict[str, Any], timeout: float | None) -> Any:
        req_id, body = self._p.request(method, params)
        refresh = False
        for attempt in (1, 2):
            try:
                response = await self._client.post(
                    self._p.url,
                    content=body,
                    headers=self._p.headers(refresh),
                    timeout=self._p.timeout if timeout is None else timeout,
                )
            except httpx.HTTPError as e:
                raise _transport_error(method, self._p.url, e) from e
            if response.status_code == 401 and self._p.cookie_file is not None and attempt == 1:
                refresh = True
                continue
            return self._p.interpret(method, req_id, response.status_code, response.content)
        raise AssertionError("unreachable")

    async def getblockchaininfo(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("getblockchaininfo")
        return result

    async def getblockcount(self) -> int:
        return int(await self.call("getblockcount"))

    async def getbestblockhash(self) -> str:
        return str(await self.call("getbestblockhash"))

    async def getblockhash(self, height: int) -> str:
        return str(await self.call("getblockhash", height))

    async def getblockheader(self, blockhash: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("getblockheader", blockhash, True)
        return result

    async def getblock(self, blockhash: str, verbosity: int = 1) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("getblock", blockhash, verbosity)
        return result

    async def gettxout(self, txid: str, n: int, include_mempool: bool = True) -> TxOutInfo | None:
        result: TxOutInfo | None = await self.call("gettxout", txid, n, include_mempool)
        return result

    async def gettxoutproof(self, txids: Sequence[str], blockhash: str | None = None) -> str:
        if blockhash is None:
            return str(await self.call("gettxoutproof", list(txids)))
        return str(await self.call("gettxoutproof", list(txids), blockhash))

    async def verifytxoutproof(self, proof: str) -> list[str]:
        return [str(t) for t in await self.call("verifytxoutproof", proof)]

    async def getrawtransaction(self, txid: str, blockhash: str | None = None) -> str:
        if blockhash is None:
            return str(await self.call("getrawtransaction", txid, False))
        return str(await self.call("getrawtransaction", txid, False, blockhash))

    async def getrawtransaction_verbose(self, txid: str, blockhash: str | None = None) -> dict[str, Any]:
        if blockhash is None:
            result: dict[str, Any] = await self.call("getrawtransaction", txid, True)
        else:
            result = await self.call("getrawtransaction", txid, True, blockhash)
        return result

    async def sendrawtransaction(self, hexstring: str, maxfeerate: Decimal | None = None) -> str:
        if maxfeerate is None:
            return str(await self.call("sendrawtransaction", hexstring))
        return str(await self.call("sendrawtransaction", hexstring, maxfeerate))

    async def testmempoolaccept(
        self, rawtxs: Sequence[str], maxfeerate: Decimal | None = None
    ) -> list[MempoolAcceptResult]:
        if maxfeerate is None:
            result: list[MempoolAcceptResult] = await self.call("testmempoolaccept", list(rawtxs))
        else:
            result = await self.call("testmempoolaccept", list(rawtxs), maxfeerate)
        return result

    async def getrawmempool(self) -> list[str]:
        return [str(t) for t in await self.call("getrawmempool", False)]

    async def estimatesmartfee(self, conf_target: int, estimate_mode: str = "economical") -> EstimateSmartFee:
        result: EstimateSmartFee = await self.call("estimatesmartfee", conf_target, estimate_mode)
        return result

    async def generatetoaddress(self, nblocks: int, address: str) -> list[str]:
        limit = max(self._p.timeout, 0.05 * nblocks + 10)
        return [str(h) for h in await self.call("generatetoaddress", nblocks, address, timeout=limit)]

    async def getnetworkinfo(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("getnetworkinfo")
        return result
