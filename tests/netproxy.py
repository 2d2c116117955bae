"""A fault-injecting TCP proxy, to cut links between real member processes.

A :class:`NetProxy` listens on one port and forwards every connection to one
target. Point member ``i``'s view of member ``j`` at a proxy and the link
``i → j`` can be switched, at any moment, between:

=============  ==============================================================
mode           effect
=============  ==============================================================
``pass``       forward bytes both ways
``blackhole``  accept connections, read and discard everything, forward
               nothing (a silent partition: only timeouts notice it)
``refuse``     close every open connection and close new ones at once
               (a loud partition: peers see EOF / reset at once)
=============  ==============================================================

A connection that lost bytes to a blackhole is closed when the mode returns
to ``pass``: a TCP stream with a hole in it is not something a real network
produces, and the peers' reconnection is what is under test. A connection
that was merely quiet while blackholed carries on.

Three ways to drive it:

* in an asyncio test: ``p = NetProxy(target); await p.start(); p.set_mode("blackhole")``;
* from synchronous code: :class:`ProxyThread` runs proxies on a loop in a
  background thread (``add(target) -> port``, ``set_mode(port, mode)``);
* as its own process, with a line-based control port::

      python -m tests.netproxy --listen 0 --target 127.0.0.1:7001 --control 0

  prints one line ``netproxy listen=HOST:PORT target=HOST:PORT control=HOST:PORT
  mode=pass`` when ready; :func:`control` (or ``nc``) sends ``pass``,
  ``blackhole``, ``refuse``, ``status`` or ``quit`` and reads one line back,
  ``ok mode=… conns=… up=… down=… swallowed=… refused=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

MODES = ("pass", "blackhole", "refuse")
_CHUNK = 65536
T = TypeVar("T")


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    poisoned: bool = False  # bytes were swallowed: the stream has a hole

    def abort(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None:
                w.transport.abort()
        for t in self.tasks:
            t.cancel()


class NetProxy:
    """Forward ``listen`` → ``target`` under a switchable fault mode."""

    def __init__(self, target: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0), mode: str = "pass") -> None:
        if mode not in MODES:
            raise ValueError(f"mode is one of {MODES}")
        self.target = target
        self._listen = listen
        self._mode = mode
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"conns": 0, "up": 0, "down": 0, "swallowed": 0, "refused": 0}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self._listen)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def set_mode(self, mode: str) -> None:
        """Switch at once; see the module docstring for what each mode does
        to connections already open."""
        if mode not in MODES:
            raise ValueError(f"mode is one of {MODES}")
        self._mode = mode
        for link in list(self._links):
            if mode == "refuse" or (mode == "pass" and link.poisoned):
                link.abort()

    def status(self) -> str:
        fields = " ".join(f"{k}={v}" for k, v in self.stats.items())
        return f"mode={self._mode} open={len(self._links)} {fields}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.stats["conns"] += 1
        if self._mode == "refuse":
            self.stats["refused"] += 1
            writer.transport.abort()
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            if self._mode == "blackhole":
                link.poisoned = True  # the client's first bytes go nowhere
                await self._pump(reader, None, link, "up")
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            link.upstream = up_writer
            link.tasks = [
                asyncio.ensure_future(self._pump(reader, up_writer, link, "up")),
                asyncio.ensure_future(self._pump(up_reader, writer, link, "down")),
            ]
            # Either side closing ends the whole link, like a real proxy.
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            link.abort()
            await asyncio.gather(*link.tasks, return_exceptions=True)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter | None, link: _Link, direction: str
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(_CHUNK):
                if self._mode != "pass" or dst is None:
                    self.stats["swallowed"] += len(data)
                    link.poisoned = True
                    continue
                dst.write(data)
                self.stats[direction] += len(data)
                await dst.drain()


class ProxyThread:
    """Proxies on an event loop in a daemon thread, driven synchronously."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="netproxy", daemon=True)
        self._thread.start()
        self._proxies: dict[int, NetProxy] = {}

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout=10)

    def add(self, target: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)) -> int:
        """Start a proxy to ``target``; returns its listening port."""

        async def make() -> NetProxy:
            p = NetProxy(target, listen)
            await p.start()
            return p

        proxy = self._call(make())
        self._proxies[proxy.port] = proxy
        return proxy.port

    def set_mode(self, port: int, mode: str) -> None:
        proxy = self._proxies[port]

        async def switch() -> None:
            proxy.set_mode(mode)

        self._call(switch())

    def status(self, port: int) -> str:
        return self._proxies[port].status()

    def close(self) -> None:
        async def stop_all() -> None:
            await asyncio.gather(*(p.stop() for p in self._proxies.values()))

        try:
            self._call(stop_all())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> ProxyThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- as a process ---------------------------------------------------------------


def control(port: int, command: str, host: str = "127.0.0.1", timeout: float = 5.0) -> str:
    """Send one command to a proxy process's control port; return its reply."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(command.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return buf.decode().strip()


def _hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or default_host), int(port)


async def _serve(args: argparse.Namespace) -> None:
    proxy = NetProxy(_hostport(args.target), _hostport(args.listen), args.mode)
    await proxy.start()
    done = asyncio.Event()

    async def on_control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while line := (await reader.readline()).decode().strip():
                if line in MODES:
                    proxy.set_mode(line)
                    reply = "ok " + proxy.status()
                elif line == "status":
                    reply = "ok " + proxy.status()
                elif line == "quit":
                    reply = "ok bye"
                    done.set()
                else:
                    reply = f"error unknown command {line!r}"
                writer.write(reply.encode() + b"\n")
                await writer.drain()
        writer.close()

    ctl = await asyncio.start_server(on_control, *_hostport(args.control))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    c_host, c_port = ctl.sockets[0].getsockname()[:2]
    l_host, l_port = proxy.address
    print(
        f"netproxy listen={l_host}:{l_port} target={args.target} control={c_host}:{c_port} mode={proxy.mode}",
        flush=True,
    )
    await done.wait()
    ctl.close()
    await proxy.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.netproxy", description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="[HOST:]PORT to listen on (0: any free port)")
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--control", required=True, help="[HOST:]PORT for the control port (0: any free port)")
    ap.add_argument("--mode", default="pass", choices=MODES)
    asyncio.run(_serve(ap.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
