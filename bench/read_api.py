"""The read API under concurrent keep-alive clients: one member of a running
devnet, ``/blocks/tip/height`` and ``/block/:hash``.

    metric                     unit    what
    tip_height_rps             req/s   200 answers with a valid body, per second
    tip_height_p50_ms / _p99   ms      request written -> last body byte read
    block_rps                  req/s   the same for /block/:hash, rotating over
    block_p50_ms / _p99        ms      every block of the chain
    (the goal on this 2-core machine: >= 2,000 req/s with p99 < 25 ms)

The federation is real: ``functionary devnet`` (5 member processes, 4-of-5,
the embedded regtest mainchain) runs with a 1 s block interval until the chain
has ``BENCH_READ_BLOCKS`` blocks, and keeps making blocks while it is measured.
One member is driven; the other four, the mainchain and the load generator
share the same two cores, and every figure carries the load average and the
CPU the client and the driven member used.

The load generator is a raw asyncio HTTP/1.1 client (uvloop when present) in
``BENCH_READ_CLIENTS`` separate processes, ``BENCH_READ_CONCURRENCY``
keep-alive connections in all, each with one request in flight (closed loop).
It checks every answer: status line ``HTTP/1.1 200``, a Content-Length and
exactly that many body bytes; a tip height must be a decimal number no lower
than the height seen before the run, and a block's JSON must equal, byte for
byte, the JSON fetched once for that hash before the run. Only such answers
are counted; anything else is an error, counted by kind and reported. After a
short warm-up per path (so the member has cached what it caches), each path is
driven for ``BENCH_READ_SECONDS``.

    python -m bench.read_api            (or: bench/run read_api)
    BENCH_READ_SECONDS=10 BENCH_READ_CONCURRENCY=16 BENCH_READ_CLIENTS=1 BENCH_READ_BLOCKS=30
    BENCH_READ_SWEEP=4,16,64            also report these concurrencies (tip height, block)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from bench._report import emit

BENCH = "read_api"
ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_READ_SECONDS", "10"))
WARMUP = float(os.environ.get("BENCH_READ_WARMUP", "2"))
CONCURRENCY = int(os.environ.get("BENCH_READ_CONCURRENCY", "16"))
CLIENTS = int(os.environ.get("BENCH_READ_CLIENTS", "1"))
BLOCKS = int(os.environ.get("BENCH_READ_BLOCKS", "30"))
SWEEP = [int(x) for x in os.environ.get("BENCH_READ_SWEEP", "").split(",") if x.strip()]
MEMBERS, THRESHOLD, BLOCK_INTERVAL = 5, 4, 1.0
DRIVEN = 1
"""The member under load (the devnet's own loop polls member 0's /status)."""
HOST = "127.0.0.1"
GOAL_RPS, GOAL_P99_MS = 2000.0, 25.0


def _say(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# --- the load generator (runs in its own processes) --------------------------------------


class _BadAnswer(Exception):
    """An answer that is not a 200 with a well-framed body."""


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1
        self.waiter: asyncio.Future[bytes] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(_BadAnswer("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            if self.buf:
                self._fail("bytes before a request")
            return
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[: end + 4]
            lines = head.split(b"\r\n")
            if not lines[0].startswith(b"HTTP/1.1 200 "):
                self._fail(f"status {lines[0][:40]!r}")
                return
            length = -1
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"transfer-encoding" or (name == b"connection" and value.strip().lower() == b"close"):
                    self._fail(f"header {line[:40]!r}")
                    return
            if length < 0:
                self._fail("no content-length")
                return
            self.need = length
        if len(self.buf) >= self.need:
            if len(self.buf) > self.need:
                self._fail("bytes past content-length")
                return
            body = bytes(self.buf)
            self.buf.clear()
            self.need = -1
            self.waiter.set_result(body)

    def _fail(self, why: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(_BadAnswer(why))
        if self.transport is not None:
            self.transport.close()

    async def request(self, raw: bytes) -> bytes:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


@dataclass
class ClientResult:
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def _request(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: */*\r\n\r\n".encode()


async def _drive(
    port: int, targets: list[tuple[str, bytes | None]], min_height: int, conns: int, seconds: float, seed: int
) -> ClientResult:
    """``conns`` connections, each sending requests for ``targets`` (path,
    expected body; None: a tip height) in turn from its own offset, for ``seconds``."""
    loop = asyncio.get_running_loop()
    res = ClientResult()
    reqs = [(_request(p, port), expect) for p, expect in targets]
    deadline = 0.0

    def err(kind: str) -> None:
        res.errors[kind] = res.errors.get(kind, 0) + 1

    async def one(k: int) -> None:
        i = (seed * 7919 + k * 104729) % len(reqs)
        conn: _Conn | None = None
        while time.perf_counter() < deadline:
            if conn is None or conn.transport is None or conn.transport.is_closing():
                try:
                    _, proto = await loop.create_connection(_Conn, HOST, port)
                except OSError as e:
                    err(f"connect: {type(e).__name__}")
                    await asyncio.sleep(0.01)
                    continue
                conn = proto
            raw, expect = reqs[i]
            i = (i + 1) % len(reqs)
            t0 = time.perf_counter()
            try:
                body = await conn.request(raw)
            except _BadAnswer as e:
                err(str(e))
                continue
            t1 = time.perf_counter()
            if expect is None:
                if not (body.isdigit() and int(body) >= min_height):
                    err("bad tip height body")
                    continue
            elif body != expect:
                err("block body differs")
                continue
            res.ok += 1
            res.latencies.append(t1 - t0)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(one(k) for k in range(conns)))
    res.seconds = time.perf_counter() - started
    return res


def _client_main(
    port: int,
    targets: list[tuple[str, bytes | None]],
    min_height: int,
    conns: int,
    seconds: float,
    seed: int,
    out: Any,
) -> None:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    with runner:
        res = runner.run(_drive(port, targets, min_height, conns, seconds, seed))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    res.cpu_seconds = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out.send(res)
    out.close()


def run_clients(
    port: int, targets: list[tuple[str, bytes | None]], min_height: int, conns: int, clients: int, seconds: float
) -> ClientResult:
    """``conns`` connections spread over ``clients`` processes; merged results."""
    ctx = mp.get_context("fork")
    procs = []
    pipes = []
    per = [conns // clients + (1 if k < conns % clients else 0) for k in range(clients)]
    for k, c in enumerate(per):
        if c == 0:
            continue
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_client_main, args=(port, targets, min_height, c, seconds, k, send), daemon=True)
        p.start()
        send.close()
        procs.append(p)
        pipes.append(recv)
    merged = ClientResult()
    for recv, p in zip(pipes, procs):
        res: ClientResult = recv.recv()
        p.join(30)
        merged.ok += res.ok
        merged.latencies.extend(res.latencies)
        for k, v in res.errors.items():
            merged.errors[k] = merged.errors.get(k, 0) + v
        merged.seconds = max(merged.seconds, res.seconds)
        merged.cpu_seconds += res.cpu_seconds
    return merged


# --- the devnet --------------------------------------------------------------------------


def _free_run(count: int) -> int:
    """A base port with ``count`` consecutive free ports (the devnet numbers
    members' ports base + i)."""
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(20000, 30000)
        held = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(s)
                s.bind((HOST, p))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no run of free ports")


def _proc_cpu(pid: int) -> float:
    """utime + stime of ``pid``, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Devnet:
    def __init__(self, data: Path) -> None:
        self.data = data
        api, p2p, chain = _free_run(MEMBERS), _free_run(MEMBERS), _free_run(1)
        self.log = open(data.parent / "devnet.out", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "functionary", "devnet", "--members", str(MEMBERS),
             "--threshold", str(THRESHOLD), "--block-interval", str(BLOCK_INTERVAL), "--data", str(data),
             "--api-port", str(api), "--p2p-port", str(p2p), "--mainchain-port", str(chain),
             "--mainchain-block-interval", "0"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.info: dict[str, Any] = {}

    def wait_info(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        path = self.data / "devnet.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"devnet exited with {self.proc.returncode}; see {self.log.name}")
            if path.exists():
                with contextlib.suppress(ValueError):
                    self.info = json.loads(path.read_text())
                    return self.info
            time.sleep(0.2)
        raise SystemExit("devnet.json did not appear")

    @staticmethod
    def tail(path: Path, lines: int = 8) -> str:
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError as e:
            return f"{path}: {e}"
        return f"--- {path.name} ({path.parent.name})\n" + "\n".join(text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def _wait(devnet: Devnet, pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            value = pred()
            if value:
                return value
        time.sleep(0.5)
    tails = [devnet.tail(devnet.data.parent / "devnet.out")]
    tails += [devnet.tail(devnet.data / f"member{i}" / "member.log") for i in range(MEMBERS)]
    raise SystemExit(f"timed out after {timeout} s waiting for {what}\n" + "\n".join(tails))


# --- the run -------------------------------------------------------------------------------


def measure(
    label: str,
    port: int,
    pid: int,
    targets: list[tuple[str, bytes | None]],
    min_height: int,
    conns: int,
    primary: bool,
    extra: dict[str, Any],
) -> None:
    run_clients(port, targets, min_height, conns, CLIENTS, WARMUP)
    load_before = _loadavg()
    cpu0, t0 = _proc_cpu(pid), time.perf_counter()
    res = run_clients(port, targets, min_height, conns, CLIENTS, SECONDS)
    server_cpu = (_proc_cpu(pid) - cpu0) / (time.perf_counter() - t0)
    if not res.latencies:
        raise SystemExit(f"{label}: no valid answer at all; errors {res.errors}")
    rps = res.ok / res.seconds
    p50 = percentile(res.latencies, 50) * 1000
    p99 = percentile(res.latencies, 99) * 1000
    info = {
        **extra,
        "concurrency": conns,
        "client_processes": CLIENTS,
        "seconds": round(res.seconds, 2),
        "ok": res.ok,
        "errors": sum(res.errors.values()),
        "error_kinds": res.errors,
        "client_cpu_cores": round(res.cpu_seconds / res.seconds, 3),
        "member_cpu_cores": round(server_cpu, 3),
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
    }
    suffix = "" if primary else f"_c{conns}"
    emit(BENCH, f"{label}_rps{suffix}", rps, "req/s", goal=f">= {GOAL_RPS:g}", **info)
    emit(BENCH, f"{label}_p50_ms{suffix}", p50, "ms", concurrency=conns)
    emit(BENCH, f"{label}_p99_ms{suffix}", p99, "ms", goal=f"< {GOAL_P99_MS:g}", concurrency=conns)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-read-api-") as tmp:
        devnet = Devnet(Path(tmp) / "devnet")
        try:
            info = devnet.wait_info(90)
            member = info["members"][DRIVEN]
            url, pid = member["api"], int(member["pid"])
            port = int(url.rsplit(":", 1)[1])
            _say(f"devnet up; waiting for {BLOCKS} blocks ({MEMBERS} members, {THRESHOLD}-of-{MEMBERS})")
            http = httpx.Client(timeout=5)
            deadline = BLOCKS * 4 + 90
            _wait(devnet, lambda: int(http.get(f"{url}/blocks/tip/height").text) >= BLOCKS, deadline, "the chain")
            tip = int(http.get(f"{url}/blocks/tip/height").text)
            hashes = [http.get(f"{url}/block-height/{h}").text.strip() for h in range(tip + 1)]
            blocks: list[tuple[str, bytes | None]] = []
            for h in hashes:
                r = http.get(f"{url}/block/{h}")
                r.raise_for_status()
                assert r.json()["id"] == h
                blocks.append((f"/block/{h}", r.content))
            http.close()
            extra = {
                "members": MEMBERS,
                "threshold": THRESHOLD,
                "block_interval_s": BLOCK_INTERVAL,
                "chain_blocks": tip + 1,
                "driven_member": DRIVEN,
                "cpus": os.cpu_count(),
                "note": "client, 5 members and the mainchain share these cores; blocks keep coming",
            }
            _say(f"chain at {tip}; driving member {DRIVEN} at {url} ({CONCURRENCY} connections)")
            tip_target: list[tuple[str, bytes | None]] = [("/blocks/tip/height", None)]
            measure("tip_height", port, pid, tip_target, tip, CONCURRENCY, True, extra)
            measure("block", port, pid, blocks, tip, CONCURRENCY, True, extra)
            for c in SWEEP:
                measure("tip_height", port, pid, tip_target, tip, c, False, extra)
                measure("block", port, pid, blocks, tip, c, False, extra)
        finally:
            devnet.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
