"""A federation of real member processes on 127.0.0.1, driven like
pyln-testing's ``node_factory``.

``ProcessFederation(base, n, m)`` runs the key ceremony (``init_federation``)
into ``base``, gives every member free loopback ports, optionally routes every
link through a fault-injecting proxy (tests/netproxy.py), and starts each
member as ``python -m functionary run --config …`` with its output appended to
``base/memberI/member.log`` (one file across all of the member's lives).

    verb                 effect
    start(i)             spawn member i; by default wait until its API answers
    kill(i) / stop(i)    SIGKILL / SIGTERM (then wait for the exit)
    wait_exit(i)         wait for a member that must exit by itself; its status
    height(i), chain(i)  tip height / block hashes by height, through the API
    wait_for(p, t, what) poll ``p`` until true, else fail naming every member's
                         height, state and log tail
    assert_stalled(...)  let in-flight rounds settle, then no height may move
    partition(groups)    cut every link between groups (existing connections
    heal()               are dropped; new ones go nowhere); heal restores them
    wipe_database(i)     delete a stopped member's database
    corrupt_database(i)  damage a stopped member's database in a named way
    events(i, name)      parsed ``event=name`` log lines, every incarnation
    signatures_sent(i)   (height, hash, round) of every signature it sent
    check_invariants()   the teardown checks, as a list of problems

Teardown invariants (``check_invariants``), after pyln-testing:

* no member exited by itself unless the test said it would (``wait_exit``);
* every running member reaches the same tip and holds the same chain;
* no two members ever logged a commit of different blocks at one height, in
  any incarnation (no fork, not even on a member that later died);
* no member ever logged two different ``signature_sent`` hashes at one height;
* no ``misbehaviour``, ``level=error`` or ``Traceback`` lines, except lines
  matching a pattern the test passed in ``allow_log``.

``close()`` SIGKILLs every child it started and stops the proxies; the pytest
fixture (``process_federation`` in tests/conftest.py) calls it even when the
test failed. Should the test process itself die first, its members get
SIGKILL from the kernel (``setpriv --pdeathsig``).

Ports are drawn below the kernel's ephemeral range: a killed member's port
stays reserved in its config, and a port inside the ephemeral range could be
taken as the source port of some outgoing connection before it restarts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import sqlalchemy as sa

from functionary.cli import PegOptions, init_federation
from functionary.config import Federation, MainchainRpc, MemberConfig
from tests.netproxy import ProxyThread

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
T = TypeVar("T")

# A member outlives nothing: if the test process dies without its teardown
# (SIGKILL, a hard timeout), the kernel kills the members too. setpriv execs,
# so the member keeps the pid we hold.
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []

_LOG_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_UNESCAPE = re.compile(r"\\(.)")


class FederationTimeout(AssertionError):
    """A wait_for deadline passed; the message describes every member."""


# --- ports ------------------------------------------------------------------------------


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports that can be bound on ``host`` now, below the
    ephemeral range when there is room there (see the module docstring)."""
    low, high = 20000, _ephemeral_low()
    if high - low < 1000:
        low, high = 1024, 65535
    rng = random.SystemRandom()  # not test randomness: nothing to reproduce
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 50):
            if len(ports) == count:
                break
            port = rng.randrange(low, high)
            if port in ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            held.append(s)
            ports.append(port)
        else:
            raise RuntimeError(f"could not find {count} free ports on {host}")
    finally:
        for s in held:
            s.close()
    return ports


def free_port_run(count: int, host: str = HOST) -> int:
    """The first of ``count`` consecutive ports that can all be bound on
    ``host`` now: for ``functionary devnet``, which gives member i the port
    base + i."""
    low, high = 20000, _ephemeral_low()
    if high - low < 1000:
        low, high = 1024, 65535
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(low, high - count)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"could not find {count} consecutive free ports on {host}")


# --- logs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One structured line a member wrote: ``ts=… level=… member=… event=… k=v``."""

    member: int
    ts: float
    fields: dict[str, str]
    raw: str

    @property
    def event(self) -> str:
        return self.fields.get("event", "")

    def num(self, key: str) -> int:
        return int(self.fields[key])


def parse_log_line(member: int, raw: str) -> LogLine | None:
    if not raw.startswith("ts="):
        return None
    fields: dict[str, str] = {}
    for key, value in _LOG_FIELD.findall(raw):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value[1:-1])
        fields[key] = value
    try:
        ts = datetime.strptime(fields["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except (KeyError, ValueError):
        return None
    return LogLine(member, ts, fields, raw)


class LogFollower:
    """Reads the lines appended to a file since ``offset``, as they arrive."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    def poll(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in lines]


# --- members ----------------------------------------------------------------------------


@dataclass
class Member:
    index: int
    dir: Path
    config_path: Path
    log_path: Path
    api: str
    proc: subprocess.Popen[bytes] | None = None
    incarnations: int = 0
    log_offsets: list[int] = field(default_factory=list)
    """Byte offset in the log where each incarnation starts."""
    exit_expected: bool = True
    """False while running: an exit we did not cause is a teardown failure."""
    unexpected_exits: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ProcessFederation:
    """``n`` members with threshold ``m``, as real processes. See the module
    docstring for the verbs and the teardown invariants."""

    def __init__(
        self,
        base: Path,
        n: int,
        m: int,
        *,
        block_interval: float = 0.5,
        round_timeout: float = 1.5,
        proxies: bool = False,
        database_url: str | None = None,
        genesis_time: int | None = None,
        free_coins: int = 0,
        allow_log: Sequence[str] = (),
        peg: PegOptions | None = None,
        mainchain_rpc: MainchainRpc | None = None,
    ) -> None:
        """``peg`` and ``mainchain_rpc`` (both or neither) give the federation
        a peg whose watchmen reach the mainchain at ``mainchain_rpc``."""
        self.base = Path(base)
        self.n = n
        self.m = m
        self.block_interval = block_interval
        self.round_timeout = round_timeout
        self.allow_log: list[re.Pattern[str]] = [re.compile(p) for p in allow_log]
        self._closed = False
        self._http = httpx.Client(timeout=3.0, limits=httpx.Limits(max_keepalive_connections=0))
        self.proxy: ProxyThread | None = None
        self.links: dict[tuple[int, int], int] = {}
        self.partitioned: set[tuple[int, int]] = set()

        init_federation(
            self.base,
            n,
            m,
            host=HOST,
            block_interval=block_interval,
            round_timeout=round_timeout,
            free_coins=free_coins,
            database_url=database_url,
            peg=peg,
            mainchain_rpc=mainchain_rpc,
        )
        ports = free_ports(2 * n)
        p2p, api = ports[:n], ports[n:]
        fed_file = self.base / "federation.json"
        fed = Federation.load(fed_file)
        fed = dataclasses.replace(
            fed,
            members=tuple(
                dataclasses.replace(mi, p2p=(HOST, p2p[mi.index]), api=f"http://{HOST}:{api[mi.index]}")
                for mi in fed.members
            ),
            genesis_time=fed.genesis_time if genesis_time is None else genesis_time,
        )
        fed.save(fed_file)
        self.federation = Federation.load(fed_file)

        if proxies:
            self.proxy = ProxyThread()
            for i in range(n):
                for j in range(i + 1, n):
                    self.links[(i, j)] = self.proxy.add((HOST, p2p[j]))
        self.members: list[Member] = []
        for i in range(n):
            mdir = self.base / f"member{i}"
            cfg_path = mdir / "member.json"
            cfg = MemberConfig.load(cfg_path)
            peers = {j: (HOST, port) for (a, j), port in self.links.items() if a == i}
            dataclasses.replace(cfg, p2p_listen=(HOST, p2p[i]), api_listen=(HOST, api[i]), peer_addresses=peers).save()
            self.members.append(Member(i, mdir, cfg_path, mdir / "member.log", f"http://{HOST}:{api[i]}"))

    # -- lifecycle ----------------------------------------------------------------------

    def config(self, i: int) -> MemberConfig:
        return MemberConfig.load(self.members[i].config_path)

    def start(self, i: int, *, wait: bool = True, timeout: float = 30.0) -> None:
        mem = self.members[i]
        if mem.running:
            raise RuntimeError(f"member {i} is already running")
        mem.incarnations += 1
        with open(mem.log_path, "ab") as log:
            mem.log_offsets.append(log.tell())
            log.write(f"# harness: start member={i} incarnation={mem.incarnations} at={time.time():.3f}\n".encode())
            log.flush()
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            mem.proc = subprocess.Popen(
                [*_DIE_WITH_PARENT, sys.executable, "-m", "functionary", "run", "--config", str(mem.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        mem.exit_expected = False
        if wait:
            self.wait_ready(i, timeout)

    def start_all(self, members: Iterable[int] | None = None, timeout: float = 60.0) -> None:
        todo = list(range(self.n) if members is None else members)
        for i in todo:
            self.start(i, wait=False)
        for i in todo:
            self.wait_ready(i, timeout)

    def wait_ready(self, i: int, timeout: float = 30.0) -> None:
        mem = self.members[i]

        def ready() -> bool:
            if mem.proc is None or mem.proc.poll() is not None:
                rc = None if mem.proc is None else mem.proc.returncode
                raise AssertionError(f"member {i} exited (status {rc}) before its API answered\n{self.describe()}")
            return self.try_height(i) is not None

        self.wait_for(ready, timeout, f"member {i}'s API")

    def kill(self, i: int) -> None:
        """SIGKILL: no cleanup, no flush; the database is as the crash left it."""
        mem = self.members[i]
        if mem.proc is None:
            return
        mem.exit_expected = True
        if mem.proc.poll() is None:
            mem.proc.send_signal(signal.SIGKILL)
        mem.proc.wait(timeout=10)

    def stop(self, i: int, timeout: float = 15.0) -> int:
        """SIGTERM and wait; the member must exit 0 in time."""
        mem = self.members[i]
        assert mem.proc is not None, f"member {i} was never started"
        mem.exit_expected = True
        if mem.proc.poll() is None:
            mem.proc.send_signal(signal.SIGTERM)
        try:
            rc = mem.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            mem.proc.kill()
            mem.proc.wait(timeout=10)
            raise AssertionError(f"member {i} did not stop within {timeout} s of SIGTERM\n{self.describe()}") from None
        if rc != 0:
            raise AssertionError(f"member {i} exited with status {rc} after SIGTERM\n{self.describe()}")
        return rc

    def wait_exit(self, i: int, timeout: float = 30.0) -> int:
        """For a member that must exit by itself (e.g. refusing to sign)."""
        mem = self.members[i]
        assert mem.proc is not None, f"member {i} was never started"
        mem.exit_expected = True
        try:
            return mem.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FederationTimeout(f"member {i} still running after {timeout} s\n{self.describe()}") from None

    def running(self) -> list[int]:
        return [m.index for m in self.members if m.running]

    def close(self) -> None:
        """Kill every child this harness started, stop the proxies. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for mem in self.members:
            if mem.proc is not None and mem.proc.poll() is None:
                self._note_unexpected_exit(mem)
                mem.exit_expected = True
                with contextlib.suppress(ProcessLookupError):
                    mem.proc.send_signal(signal.SIGKILL)
        for mem in self.members:
            if mem.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    mem.proc.wait(timeout=10)
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.close()
        self._http.close()

    def __enter__(self) -> ProcessFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _note_unexpected_exit(self, mem: Member) -> None:
        if mem.proc is not None and mem.proc.poll() is not None and not mem.exit_expected:
            mem.unexpected_exits.append(f"member {mem.index} exited by itself with status {mem.proc.returncode}")
            mem.exit_expected = True

    # -- the API ------------------------------------------------------------------------

    def _get(self, i: int, path: str) -> str:
        r = self._http.get(self.members[i].api + path)
        r.raise_for_status()
        return r.text

    def height(self, i: int) -> int:
        return int(self._get(i, "/blocks/tip/height"))

    def try_height(self, i: int) -> int | None:
        try:
            return self.height(i)
        except (httpx.HTTPError, ValueError):
            return None

    def block_hash(self, i: int, height: int) -> str:
        return self._get(i, f"/block-height/{height}").strip()

    def chain(self, i: int, upto: int | None = None) -> list[str]:
        """Member i's block hashes, index = height, from genesis to ``upto``
        (default: its tip when asked)."""
        top = self.height(i) if upto is None else upto
        return [self.block_hash(i, h) for h in range(top + 1)]

    def header(self, i: int, block_hash: str) -> bytes:
        return bytes.fromhex(self._get(i, f"/block/{block_hash}/header").strip())

    def status(self, i: int) -> dict[str, object]:
        r = self._http.get(self.members[i].api + "/status")
        r.raise_for_status()
        data: dict[str, object] = r.json()
        return data

    def heights(self, members: Iterable[int] | None = None) -> dict[int, int | None]:
        return {i: self.try_height(i) for i in (self.running() if members is None else members)}

    # -- waiting ------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
        """Poll ``predicate`` until it returns something truthy (returned).
        HTTP errors count as "not yet". On timeout, fail with every member's
        state, height and log tail."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except (httpx.HTTPError, ValueError) as e:
                last_error = e
            if time.monotonic() >= deadline:
                extra = f" (last error: {last_error!r})" if last_error is not None else ""
                raise FederationTimeout(f"timed out after {timeout:g} s waiting for {what}{extra}\n{self.describe()}")
            time.sleep(interval)

    def wait_heights(self, target: int, members: Iterable[int] | None = None, timeout: float = 60.0) -> None:
        who = list(self.running() if members is None else members)

        def reached() -> bool:
            return all((h := self.try_height(i)) is not None and h >= target for i in who)

        self.wait_for(reached, timeout, f"members {who} to reach height {target}")

    def wait_converged(self, members: Iterable[int] | None = None, timeout: float = 60.0) -> int:
        """Until the members report one tip (height and hash); returns the height."""
        who = list(self.running() if members is None else members)

        def same_tip() -> int | None:
            tips = {(self.height(i), self._get(i, "/blocks/tip/hash").strip()) for i in who}
            if len(tips) == 1:
                return next(iter(tips))[0] + 1  # truthy even at height 0
            return None

        found = self.wait_for(same_tip, timeout, f"members {who} to agree on one tip")
        assert found is not None
        return found - 1

    def assert_stalled(
        self, members: Iterable[int], *, window: float, settle: float = 2.0, timeout: float = 30.0
    ) -> dict[int, int]:
        """Let in-flight rounds settle (heights unchanged for ``settle`` s),
        then watch ``window`` seconds: no member's height may move."""
        who = list(members)
        state: dict[str, object] = {"heights": None, "since": time.monotonic()}

        def settled() -> bool:
            hs = {i: self.height(i) for i in who}
            if hs != state["heights"]:
                state["heights"], state["since"] = hs, time.monotonic()
                return False
            return time.monotonic() - float(state["since"]) >= settle  # type: ignore[arg-type]

        self.wait_for(settled, timeout, f"members {who} to settle (no new block for {settle:g} s)")
        frozen: dict[int, int] = dict(state["heights"])  # type: ignore[call-overload]
        end = time.monotonic() + window
        while time.monotonic() < end:
            now = {i: self.height(i) for i in who}
            if now != frozen:
                raise AssertionError(
                    f"the chain moved while it should be stalled: {frozen} -> {now}\n{self.describe()}"
                )
            time.sleep(0.2)
        return frozen

    # -- the network --------------------------------------------------------------------

    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Cut every link between members of different groups: connections
        open on it are dropped, new ones are accepted and go nowhere."""
        if self.proxy is None:
            raise RuntimeError("this federation was built without proxies")
        side: dict[int, int] = {}
        for g, members in enumerate(groups):
            for i in members:
                if i in side:
                    raise ValueError(f"member {i} is in two groups")
                side[i] = g
        if set(side) != set(range(self.n)):
            raise ValueError(f"groups must cover members 0..{self.n - 1}, got {sorted(side)}")
        for link, port in self.links.items():
            i, j = link
            if side[i] != side[j]:
                self.proxy.set_mode(port, "refuse")  # drop what is open
                self.proxy.set_mode(port, "blackhole")  # and let new connections hang
                self.partitioned.add(link)

    def heal(self) -> None:
        assert self.proxy is not None
        for link in sorted(self.partitioned):
            self.proxy.set_mode(self.links[link], "pass")
        self.partitioned.clear()

    # -- databases ----------------------------------------------------------------------

    def _require_stopped(self, i: int) -> None:
        if self.members[i].running:
            raise RuntimeError(f"member {i} must be stopped before its database is touched")

    def _engine(self, i: int) -> sa.Engine:
        return sa.create_engine(self.config(i).resolved_database_url, poolclass=sa.pool.NullPool)

    def wipe_database(self, i: int) -> None:
        """The member's database, gone: SQLite files deleted, or every
        PostgreSQL table dropped."""
        self._require_stopped(i)
        cfg = self.config(i)
        if cfg.database_url is None:
            path = cfg.data_dir / "chain.sqlite"
            for p in path.parent.glob(path.name + "*"):
                p.unlink()
            assert not list(path.parent.glob(path.name + "*"))
            return
        engine = self._engine(i)
        try:
            meta = sa.MetaData()
            meta.reflect(engine)
            meta.drop_all(engine)
        finally:
            engine.dispose()

    def corrupt_database(self, i: int, kind: str, height: int) -> None:
        """Damage a stopped member's database.

        ``flip``: flip one byte of the merkle root in block ``height``'s stored
        header and raw block alike (the row stays self-consistent; its hash
        no longer recomputes). ``drop_row``: delete block ``height`` (heights
        jump). ``truncate`` (SQLite): cut the file to half its length.
        """
        self._require_stopped(i)
        if kind == "truncate":
            cfg = self.config(i)
            if cfg.database_url is not None:
                raise ValueError("truncate applies to SQLite files only")
            path = cfg.data_dir / "chain.sqlite"
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = path.stat().st_size
            os.truncate(path, size // 2)
            return
        engine = self._engine(i)
        try:
            with engine.begin() as conn:
                if kind == "flip":
                    row = conn.execute(sa.text("SELECT raw, header FROM blocks WHERE height = :h"), {"h": height}).one()
                    raw, header = bytearray(row.raw), bytearray(row.header)
                    offset = 4 + 32 + 7  # version, prev hash, then inside the merkle root
                    raw[offset] ^= 0x5A
                    header[offset] ^= 0x5A
                    conn.execute(
                        sa.text("UPDATE blocks SET raw = :r, header = :hd WHERE height = :h"),
                        {"r": bytes(raw), "hd": bytes(header), "h": height},
                    )
                elif kind == "drop_row":
                    conn.execute(sa.text("DELETE FROM block_txs WHERE height = :h"), {"h": height})
                    n = conn.execute(sa.text("DELETE FROM blocks WHERE height = :h"), {"h": height}).rowcount
                    assert n == 1, f"member {i} has no block {height} to delete"
                else:
                    raise ValueError(f"unknown corruption {kind!r}")
        finally:
            engine.dispose()

    # -- logs ---------------------------------------------------------------------------

    def log_text(self, i: int, incarnation: int | None = None) -> str:
        """The whole log, or one incarnation's part of it (1-based; -1: the last)."""
        mem = self.members[i]
        try:
            data = mem.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        if incarnation is None:
            return data.decode(errors="replace")
        k = incarnation if incarnation > 0 else mem.incarnations + 1 + incarnation
        start = mem.log_offsets[k - 1]
        end = mem.log_offsets[k] if k < len(mem.log_offsets) else len(data)
        return data[start:end].decode(errors="replace")

    def log_lines(self, i: int, incarnation: int | None = None) -> list[LogLine]:
        out = []
        for raw in self.log_text(i, incarnation).splitlines():
            line = parse_log_line(i, raw)
            if line is not None:
                out.append(line)
        return out

    def events(self, i: int, name: str, incarnation: int | None = None) -> list[LogLine]:
        return [line for line in self.log_lines(i, incarnation) if line.event == name]

    def signatures_sent(self, i: int) -> list[tuple[int, str, int]]:
        """(height, block hash, round) of every signature member i sent, in
        every incarnation, in log order."""
        return [
            (line.num("height"), line.fields["hash"], line.num("round")) for line in self.events(i, "signature_sent")
        ]

    def commits(self, i: int, incarnation: int | None = None) -> dict[int, str]:
        """height -> hash of every commit member i logged (catch-up included)."""
        return {line.num("height"): line.fields["hash"] for line in self.events(i, "commit", incarnation)}

    def follow(self, i: int) -> LogFollower:
        """Lines member i writes from now on."""
        path = self.members[i].log_path
        return LogFollower(path, path.stat().st_size if path.exists() else 0)

    # -- diagnostics and invariants -----------------------------------------------------

    def describe(self, tail: int = 12) -> str:
        out = []
        for mem in self.members:
            if mem.proc is None:
                state = "never started"
            elif mem.proc.poll() is None:
                state = f"running pid {mem.proc.pid}"
            else:
                state = f"exited {mem.proc.returncode}"
            h = self.try_height(mem.index) if mem.running else None
            out.append(f"--- member {mem.index}: {state}, height {h}, incarnations {mem.incarnations}")
            lines = self.log_text(mem.index).splitlines()[-tail:]
            out.extend("    " + line[:300] for line in lines)
        if self.partitioned:
            out.append(f"--- partitioned links: {sorted(self.partitioned)}")
        return "\n".join(out)

    def _allowed(self, line: str) -> bool:
        return any(p.search(line) for p in self.allow_log)

    def check_invariants(self, converge_timeout: float = 60.0) -> list[str]:
        """Every teardown check; returns the problems found (empty: all hold)."""
        problems: list[str] = []
        for mem in self.members:
            self._note_unexpected_exit(mem)
            problems.extend(mem.unexpected_exits)

        live = self.running()
        if live:
            try:
                top = self.wait_converged(live, converge_timeout)
                chains = {i: self.chain(i, top) for i in live}
                first = chains[live[0]]
                for i, c in chains.items():
                    if c != first:
                        diff = next(h for h in range(len(c)) if c[h] != first[h])
                        problems.append(f"member {i} holds another chain than member {live[0]} from height {diff}")
            except (AssertionError, httpx.HTTPError, ValueError) as e:
                problems.append(f"running members {live} do not converge: {e}")

        committed: dict[int, tuple[str, int]] = {}
        for mem in self.members:
            for line in self.events(mem.index, "commit"):
                h, bh = line.num("height"), line.fields["hash"]
                seen = committed.setdefault(h, (bh, mem.index))
                if seen[0] != bh:
                    problems.append(
                        f"fork at height {h}: member {seen[1]} committed {seen[0]}, member {mem.index} {bh}"
                    )
            signed: dict[int, str] = {}
            for h, bh, _round in self.signatures_sent(mem.index):
                if signed.setdefault(h, bh) != bh:
                    problems.append(f"member {mem.index} sent signatures for two blocks at height {h}")
            for raw in self.log_text(mem.index).splitlines():
                bad = (
                    "event=misbehaviour" in raw or "Traceback" in raw or "level=error" in raw or "level=critical" in raw
                )
                if bad and not self._allowed(raw):
                    problems.append(f"member {mem.index} logged: {raw[:400]}")
        return problems

    def assert_invariants(self) -> None:
        problems = self.check_invariants()
        if problems:
            raise AssertionError(
                "federation teardown invariants failed:\n  " + "\n  ".join(problems) + "\n" + self.describe()
            )


__all__ = [
    "FederationTimeout",
    "LogFollower",
    "LogLine",
    "Member",
    "ProcessFederation",
    "free_ports",
    "parse_log_line",
]
