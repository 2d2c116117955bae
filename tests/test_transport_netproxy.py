"""The fault-injecting proxy, alone and between two transport members."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from functionary.transport import PeerInfo, PeerNetwork
from tests.netproxy import NetProxy, ProxyThread, control

ROOT = Path(__file__).resolve().parent.parent


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield str(server.server_address[0]), int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _echo_once(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """Send ``data`` through a fresh connection; return what comes back
    (b"" on close, or whatever arrived before ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            got = b""
            while len(got) < len(data):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            return got
        except (TimeoutError, ConnectionResetError):
            return b""


def test_proxy_modes_in_process(echo_server: tuple[str, int]) -> None:
    async def body() -> None:
        proxy = NetProxy(echo_server)
        await proxy.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
            w.write(b"ping")
            assert await r.readexactly(4) == b"ping"

            proxy.set_mode("blackhole")
            w.write(b"lost")
            await until(lambda: proxy.stats["swallowed"] == 4, "the blackhole to swallow")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await r.read(1)
            # A stream that lost bytes is cut when the link heals; new ones work.
            proxy.set_mode("pass")
            assert await r.read() == b""
            w.close()
            r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
            w.write(b"again")
            assert await r.readexactly(5) == b"again"

            # A quiet connection survives a blackhole untouched.
            proxy.set_mode("blackhole")
            proxy.set_mode("pass")
            w.write(b"still")
            assert await r.readexactly(5) == b"still"

            proxy.set_mode("refuse")
            assert await r.read() == b""
            w.close()
            r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
            with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
                await r.readexactly(1)
            w.close()
            assert proxy.stats["refused"] == 1
        finally:
            await proxy.stop()

    asyncio.run(body())


def test_proxy_thread_and_process_control(echo_server: tuple[str, int]) -> None:
    with ProxyThread() as proxies:
        port = proxies.add(echo_server)
        assert _echo_once(port, b"threaded") == b"threaded"
        proxies.set_mode(port, "refuse")
        assert _echo_once(port, b"x") == b""
        proxies.set_mode(port, "pass")
        assert _echo_once(port, b"back") == b"back"

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    target = f"{echo_server[0]}:{echo_server[1]}"
    cmd = [sys.executable, "-m", "tests.netproxy", "--listen", "0", "--target", target, "--control", "0"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as proc:
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline().split()
            assert ready[0] == "netproxy", ready
            fields = dict(f.split("=", 1) for f in ready[1:])
            port = int(fields["listen"].rsplit(":", 1)[1])
            ctl = int(fields["control"].rsplit(":", 1)[1])
            assert _echo_once(port, b"proc") == b"proc"
            assert control(ctl, "blackhole").startswith("ok mode=blackhole")
            assert _echo_once(port, b"gone", timeout=0.3) == b""
            assert control(ctl, "pass").startswith("ok mode=pass")
            assert _echo_once(port, b"healed") == b"healed"
            assert "swallowed=4" in control(ctl, "status")
            assert control(ctl, "bogus").startswith("error")
            assert control(ctl, "quit") == "ok bye"
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_partition_and_heal_between_two_members() -> None:
    """0 dials 1 through a proxy: a blackhole is noticed by the idle timeout,
    a refusal at once; each time the link heals the session comes back and
    what was queued meanwhile is delivered."""

    async def body() -> None:
        keys = [SigningKey.generate() for _ in range(2)]
        listen = socket.socket()
        listen.bind(("127.0.0.1", 0))
        proxy = NetProxy(("127.0.0.1", listen.getsockname()[1]))
        await proxy.start()
        infos = {
            0: PeerInfo(0, bytes(keys[0].verify_key), "127.0.0.1", 0),
            1: PeerInfo(1, bytes(keys[1].verify_key), "127.0.0.1", proxy.port),
        }
        inbox: dict[int, list[bytes]] = {0: [], 1: []}
        kw = {
            "keepalive_interval": 0.1,
            "idle_timeout": 0.5,
            "handshake_timeout": 0.3,
            "backoff_base": 0.05,
            "backoff_cap": 0.3,
        }
        log = logging.getLogger("test.netproxy.partition")
        n0 = PeerNetwork(0, keys[0], infos, ("127.0.0.1", 0), lambda p, d: inbox[0].append(d), b"f", log, **kw)  # type: ignore[arg-type]
        n1 = PeerNetwork(1, keys[1], infos, listen, lambda p, d: inbox[1].append(d), b"f", log, **kw)  # type: ignore[arg-type]
        await n1.start()
        await n0.start()
        try:
            await until(lambda: n0.connected_peers() == {1} and n1.connected_peers() == {0}, "connected")

            proxy.set_mode("blackhole")
            await until(lambda: not n0.connected_peers() and not n1.connected_peers(), "both to notice")
            assert n1.stats()["disconnect.PeerIdle"] >= 1
            n0.send(1, b"during blackhole")
            # Redials reach the proxy, which swallows them: the handshake times out.
            await until(lambda: n0.stats().get("rejected.HandshakeTimeout", 0) >= 1, "a swallowed redial")
            proxy.set_mode("pass")
            await until(lambda: inbox[1] == [b"during blackhole"], "the queued message after healing")

            proxy.set_mode("refuse")
            await until(lambda: not n0.connected_peers() and not n1.connected_peers(), "a loud partition")
            n1.send(0, b"during refusal")
            proxy.set_mode("pass")
            await until(lambda: inbox[0] == [b"during refusal"], "the other direction after healing")
            assert n0.connected_peers() == {1}
        finally:
            await n0.stop()
            await n1.stop()
            await proxy.stop()
            listen.close()

    asyncio.run(body())
