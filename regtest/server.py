"""The JSON-RPC HTTP server, speaking as Bitcoin Core's ``httprpc.cpp`` does.

Binds 127.0.0.1 unless told otherwise (``--rpcbind``, for a container network).
HTTP/1.1 with keep-alive; one thread per connection;
every call runs under the node's lock.

| request                          | HTTP status | body                                              |
|----------------------------------|-------------|---------------------------------------------------|
| not POST                         | 405         | JSONRPC server handles only POST requests         |
| no ``Authorization`` header      | 401         | empty; ``WWW-Authenticate: Basic realm="jsonrpc"`` |
| wrong credentials                | 401         | the same, after 250 ms (Core's deterrent)         |
| body not JSON (JSON-RPC 1.x)     | 500         | error -32700 "Parse error", id null               |
| call succeeded                   | 200         | ``{"result": …, "error": null, "id": …}``         |
| error -32600 (invalid request)   | 400         | ``{"result": null, "error": {code, message}, "id": …}`` |
| error -32601 (method not found)  | 404         | the same                                          |
| any other RPC error              | 500         | the same                                          |
| JSON-RPC 2.0 (``"jsonrpc": "2.0"``) | 200, or 204 for a notification | ``result`` or ``error``, not both |
| batch (a JSON array)             | 200         | one reply per request                             |
| path ``/wallet/<name>``          | as above    | ``<name>`` must be the node's wallet ""; else -18 |

These are Core 28's statuses for legacy requests (test/functional/interface_rpc.py).

Authentication: ``--rpcuser``/``--rpcpassword`` when given; otherwise a cookie
``__cookie__:<64 hex>`` written to ``<datadir>/.cookie`` (mode 0600) at start
and removed at a clean stop, as Core's cookie authentication.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import urllib.parse
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .node import Node
from .rpc import (
    RPC_INTERNAL_ERROR,
    RPC_INVALID_REQUEST,
    RPC_METHOD_NOT_FOUND,
    RPC_PARSE_ERROR,
    RpcError,
    dispatch,
    dumps,
)

log = logging.getLogger("regtest")

MAX_BODY = 32 * 1024 * 1024  # Core's MAX_SIZE for an HTTP body
COOKIE_USER = "__cookie__"


class Auth:
    """The one accepted ``user:password``; compared in constant time."""

    def __init__(self, user_colon_password: str, cookie_path: Path | None = None) -> None:
        self.expected = user_colon_password.encode()
        self.cookie_path = cookie_path

    @classmethod
    def cookie(cls, datadir: Path) -> Auth:
        secret = f"{COOKIE_USER}:{secrets.token_hex(32)}"
        path = datadir / ".cookie"
        tmp = datadir / ".cookie.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        os.replace(tmp, path)
        return cls(secret, path)

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self.expected)

    def remove_cookie(self) -> None:
        if self.cookie_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.cookie_path.unlink()


def _error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _http_status(code: int) -> int:
    if code == RPC_INVALID_REQUEST:
        return 400
    if code == RPC_METHOD_NOT_FOUND:
        return 404
    return 500


class RpcServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, port: int, node: Node, auth: Auth, bind: str = "127.0.0.1") -> None:
        self.node = node
        self.auth = auth
        super().__init__((bind, port), _Handler)

    # --- one call ----------------------------------------------------------------------------

    def execute(self, request: Any, wallet: str | None) -> tuple[dict[str, Any] | None, int]:
        """(reply object or None for a 2.0 notification, HTTP status) for one request."""
        if not isinstance(request, dict):
            return {"result": None, "error": _error(RPC_INVALID_REQUEST, "Invalid Request object"), "id": None}, 400
        req_id = request.get("id")
        version2 = request.get("jsonrpc") == "2.0"
        notification = version2 and "id" not in request
        try:
            jsonrpc = request.get("jsonrpc")
            if jsonrpc is not None and jsonrpc not in ("1.0", "2.0"):
                raise RpcError(RPC_INVALID_REQUEST, "JSON-RPC version not supported")
            method = request.get("method")
            if method is None:
                raise RpcError(RPC_INVALID_REQUEST, "Missing method")
            if not isinstance(method, str):
                raise RpcError(RPC_INVALID_REQUEST, "Method must be a string")
            params = request.get("params")
            if params is not None and not isinstance(params, list | dict):
                raise RpcError(RPC_INVALID_REQUEST, "Params must be an array or object")
            result = dispatch(self.node, method, params, wallet)
            if version2:
                reply: dict[str, Any] = {"jsonrpc": "2.0", "result": result, "id": req_id}
            else:
                reply = {"result": result, "error": None, "id": req_id}
            status = 200
        except RpcError as e:
            if version2:
                reply = {"jsonrpc": "2.0", "error": _error(e.code, e.message), "id": req_id}
                status = 200
            else:
                reply = {"result": None, "error": _error(e.code, e.message), "id": req_id}
                status = _http_status(e.code)
        except Exception as e:  # a bug here must not take the server down
            log.exception("internal error in %r", request.get("method"))
            message = f"Internal error: {type(e).__name__}: {e}"
            if version2:
                reply = {"jsonrpc": "2.0", "error": _error(RPC_INTERNAL_ERROR, message), "id": req_id}
                status = 200
            else:
                reply = {"result": None, "error": _error(RPC_INTERNAL_ERROR, message), "id": req_id}
                status = 500
        if notification:
            return None, 204
        return reply, status


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RpcServer
    server_version = "regtest-standin"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s " + format, self.address_string(), *args)

    def _reply(self, status: int, body: bytes = b"", content_type: str | None = "application/json") -> None:
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="jsonrpc"')
        if body and content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply(405, b"JSONRPC server handles only POST requests", "text/html; charset=ISO-8859-1")

    do_PUT = do_GET
    do_DELETE = do_GET
    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._reply(413)
            return
        body = self.rfile.read(length) if length else b""
        if not self.server.auth.check(self.headers.get("Authorization")):
            if self.headers.get("Authorization"):
                time.sleep(0.25)  # Core's deterrent against guessing
                log.info("incorrect password attempt from %s", self.address_string())
            self._reply(401)
            return
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        wallet: str | None = None
        if path.startswith("/wallet/"):
            wallet = path[len("/wallet/") :]
        elif path not in ("/", ""):
            self._reply(404)
            return
        try:
            request = json.loads(body.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError):
            reply = {"result": None, "error": _error(RPC_PARSE_ERROR, "Parse error"), "id": None}
            self._reply(500, dumps(reply).encode())
            return
        if isinstance(request, list):
            replies = []
            for item in request:
                r, _ = self.server.execute(item, wallet)
                if r is not None:
                    replies.append(r)
            if not replies and request:
                self._reply(204, b"")
                return
            self._reply(200, dumps(replies).encode())
            return
        if not isinstance(request, dict):
            reply = {"result": None, "error": _error(RPC_PARSE_ERROR, "Top-level object parse error"), "id": None}
            self._reply(500, dumps(reply).encode())
            return
        reply_obj, status = self.server.execute(request, wallet)
        if reply_obj is None:
            self._reply(204, b"")
            return
        self._reply(status, dumps(reply_obj).encode())


def serve(node: Node, port: int, auth: Auth, bind: str = "127.0.0.1") -> RpcServer:
    """Start serving on a background thread; the caller loads the node meanwhile."""
    server = RpcServer(port, node, auth, bind)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server
