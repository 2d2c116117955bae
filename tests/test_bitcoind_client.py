"""functionary.bitcoind's client against misbehaving servers: what each failure
raises. Real sockets on loopback; no bitcoind needed."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from functionary.bitcoind import (
    AsyncBitcoinRpc,
    BitcoinRpc,
    MainchainError,
    RpcAuthError,
    RpcConnectionError,
    RpcError,
    RpcInWarmup,
    RpcProtocolError,
    RpcTimeout,
    RpcVerifyRejected,
    btc,
    sats,
)
from functionary.errors import FunctionaryError

Reply = Callable[[dict[str, Any], dict[str, str]], tuple[int, bytes]]


class _Server:
    """A tiny HTTP server answering each POST with ``reply(request, headers)``."""

    def __init__(self, reply: Reply) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append(request)
                outer.headers.append(headers)
                status, payload = reply(request, headers)
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], _Server]]:
    servers: list[_Server] = []

    def make(reply: Reply) -> _Server:
        s = _Server(reply)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def ok(result: Any) -> Reply:
    return lambda req, _h: (200, json.dumps({"result": result, "error": None, "id": req["id"]}).encode())


def error(status: int, code: int, message: str) -> Reply:
    body = {"result": None, "error": {"code": code, "message": message}}
    return lambda req, _h: (status, json.dumps({**body, "id": req["id"]}).encode())


def test_request_shape_credentials_and_exact_amounts(serve: Callable[[Reply], _Server]) -> None:
    server = serve(lambda req, _h: (200, b'{"result": 21000000.12345678, "error": null, "id": %d}' % req["id"]))
    with BitcoinRpc(server.url.replace("http://", "http://alice:s%40cret@")) as rpc:
        value = rpc.call("sendtoaddress", "bcrt1qaddress", Decimal("20999999.99999999"))
    assert value == Decimal("21000000.12345678") and isinstance(value, Decimal)
    [request] = server.requests
    assert request["method"] == "sendtoaddress" and request["jsonrpc"] == "1.0"
    assert request["params"] == ["bcrt1qaddress", 20999999.99999999]
    assert base64.b64decode(server.headers[0]["authorization"][6:]) == b"alice:s@cret"


def test_amount_helpers() -> None:
    assert btc(123_456_789) == Decimal("1.23456789")
    assert sats(Decimal("1.23456789")) == 123_456_789
    with pytest.raises(ValueError):
        sats(Decimal("0.000000001"))


def test_rpc_errors_map_to_classes(serve: Callable[[Reply], _Server]) -> None:
    server = serve(error(500, -26, "min relay fee not met, 0 < 110"))
    with BitcoinRpc(server.url, user="u", password="p") as rpc, pytest.raises(RpcVerifyRejected) as info:
        rpc.sendrawtransaction("00")
    err = info.value
    assert isinstance(err, RpcError) and isinstance(err, MainchainError) and isinstance(err, FunctionaryError)
    assert err.rpc_code == -26 and err.reject_reason == "min relay fee not met" and err.method == "sendrawtransaction"
    assert err.code == "RpcVerifyRejected"  # FunctionaryError's stable name

    server = serve(error(500, -28, "Loading block index…"))
    with BitcoinRpc(server.url, user="u", password="p") as rpc, pytest.raises(RpcInWarmup):
        rpc.getblockcount()

    server = serve(error(500, -99, "something new"))
    with BitcoinRpc(server.url, user="u", password="p") as rpc, pytest.raises(RpcError) as info2:
        rpc.getblockcount()
    assert type(info2.value) is RpcError and info2.value.rpc_code == -99


def test_protocol_errors(serve: Callable[[Reply], _Server]) -> None:
    cases: list[Reply] = [
        lambda req, _h: (200, b"<html>not json</html>"),
        lambda req, _h: (502, b"Bad gateway"),
        lambda req, _h: (200, b'{"result": 1, "error": null, "id": 999999}'),
        lambda req, _h: (200, b"[1, 2]"),
        lambda req, _h: (500, b'{"result": null, "error": null, "id": %d}' % req["id"]),
    ]
    for reply in cases:
        server = serve(reply)
        with BitcoinRpc(server.url, user="u", password="p") as rpc, pytest.raises(RpcProtocolError):
            rpc.getblockcount()


def test_auth_errors_and_cookie_refresh(serve: Callable[[Reply], _Server], tmp_path: Path) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:first")
    current = {"secret": "__cookie__:first"}

    def reply(req: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
        given = base64.b64decode(headers["authorization"][6:]).decode()
        if given != current["secret"]:
            return 401, b""
        return 200, json.dumps({"result": 7, "error": None, "id": req["id"]}).encode()

    server = serve(reply)
    with BitcoinRpc(server.url, cookie_file=cookie) as rpc:
        assert rpc.getblockcount() == 7
        # The node restarted and wrote a new cookie: one retry with it succeeds.
        current["secret"] = "__cookie__:second"
        cookie.write_text("__cookie__:second")
        assert rpc.getblockcount() == 7
        # Wrong everywhere: RpcAuthError, not a loop.
        current["secret"] = "__cookie__:third"
        with pytest.raises(RpcAuthError):
            rpc.getblockcount()
    with BitcoinRpc(server.url, cookie_file=tmp_path / "missing") as rpc, pytest.raises(RpcAuthError):
        rpc.getblockcount()
    with pytest.raises(ValueError):
        BitcoinRpc(server.url)  # no credentials at all


def test_connection_refused_and_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with BitcoinRpc(url, user="u", password="p", timeout=2) as rpc, pytest.raises(RpcConnectionError):
        rpc.getblockcount()

    # A server that accepts connections and never answers.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with BitcoinRpc(url, user="u", password="p", timeout=0.3) as rpc, pytest.raises(RpcTimeout):
            rpc.getblockcount()
    finally:
        listener.close()


def test_wait_ready_retries_warmup(serve: Callable[[Reply], _Server]) -> None:
    calls = {"n": 0}

    def reply(req: dict[str, Any], _h: dict[str, str]) -> tuple[int, bytes]:
        calls["n"] += 1
        if calls["n"] < 3:
            body = {"result": None, "error": {"code": -28, "message": "Verifying blocks…"}, "id": req["id"]}
            return 500, json.dumps(body).encode()
        return 200, json.dumps({"result": {"chain": "regtest"}, "error": None, "id": req["id"]}).encode()

    server = serve(reply)
    with BitcoinRpc(server.url, user="u", password="p") as rpc:
        assert rpc.wait_ready(timeout=10, interval=0.01) == {"chain": "regtest"}
    assert calls["n"] == 3


def test_wallet_path_and_named_params(serve: Callable[[Reply], _Server]) -> None:
    server = serve(ok("txid"))
    with BitcoinRpc(server.url, user="u", password="p", wallet="my wallet") as rpc:
        assert rpc.url.endswith("/wallet/my%20wallet")
        assert rpc.sendtoaddress("bcrt1q", Decimal("1"), fee_rate=2) == "txid"
    assert server.requests[-1]["params"] == {"address": "bcrt1q", "amount": 1, "fee_rate": 2}


def test_async_client(serve: Callable[[Reply], _Server]) -> None:
    server = serve(ok(42))

    async def main() -> int:
        async with AsyncBitcoinRpc(server.url, user="u", password="p") as rpc:
            return await rpc.getblockcount()

    assert asyncio.run(main()) == 42

    failing = serve(error(500, -26, "txn-mempool-conflict"))

    async def reject() -> None:
        async with AsyncBitcoinRpc(failing.url, user="u", password="p") as rpc:
            await rpc.sendrawtransaction("00")

    with pytest.raises(RpcVerifyRejected):
        asyncio.run(reject())


def test_from_member_config(serve: Callable[[Reply], _Server], tmp_path: Path) -> None:
    from functionary.config import MainchainRpc

    server = serve(ok(5))
    password_file = tmp_path / "rpcpassword"
    password_file.write_text("s3cret\n")
    cfg = MainchainRpc(url=server.url, user="member", password_file=password_file, timeout=5.0)
    with BitcoinRpc.from_config(cfg) as rpc:
        assert rpc.getblockcount() == 5
    assert base64.b64decode(server.headers[-1]["authorization"][6:]) == b"member:s3cret"
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:abc")
    with BitcoinRpc.from_config(MainchainRpc(url=server.url, cookie_file=cookie)) as rpc:
        assert rpc.getblockcount() == 5
    assert base64.b64decode(server.headers[-1]["authorization"][6:]) == b"__cookie__:abc"
