"""A throwaway PostgreSQL cluster for tests.

``PgCluster`` runs ``initdb`` into a fresh temporary directory, starts the
server with ``pg_ctl`` on a free loopback port (its unix socket inside that
directory, so nothing outside is touched), hands out one database per caller
as a SQLAlchemy URL, and on ``stop()`` kills the server and deletes the
directory. Authentication is ``trust`` and the server listens on 127.0.0.1
only.

PostgreSQL refuses to run as root. When the tests run as root the cluster
belongs to the ``postgres`` user if there is one (else ``nobody``) and the
server binaries are run through ``setpriv``.

    with PgCluster(find_pg_bin()) as pg:
        url = pg.create_database("t1")   # postgresql+psycopg://postgres@127.0.0.1:PORT/t1

The server outlives a test process that is SIGKILLed; ``stop()`` is also
registered with ``atexit`` for every other way out.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

SUPERUSER = "postgres"


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: ``$PG_BIN``, else the
    newest ``/usr/lib/postgresql/*/bin``, else wherever ``PATH`` finds them."""
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0],
        reverse=True,
    )
    candidates += versions
    which = shutil.which("initdb")
    if which:
        candidates.append(Path(which).parent)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file():
            return c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self, bin_dir: Path, *, fsync: bool = True) -> None:
        self.bin_dir = bin_dir
        self.fsync = fsync
        self.base: Path | None = None
        self.port: int | None = None
        self._prefix: list[str] = []
        self._uid: int | None = None
        self._gid: int | None = None
        self._running = False

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pgtest-"))
        os.chmod(self.base, 0o700)
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                user = pwd.getpwnam("nobody")
            self._uid, self._gid = user.pw_uid, user.pw_gid
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self._prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
        atexit.register(self.stop)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",  # a throwaway cluster: its files need not survive a power cut
            "--no-instructions",
        )
        last_error = ""
        for _ in range(3):  # the free port may be taken between probing and binding
            self.port = _free_port()
            opts = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-c port={self.port}",
                    f"-c unix_socket_directories={self.base}",
                    f"-c fsync={'on' if self.fsync else 'off'}",
                    "-c max_connections=100",
                    "-c shared_buffers=16MB",
                ]
            )
            proc = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-t", "60",
                "-o", opts, "start", check=False,
            )  # fmt: skip
            if proc.returncode == 0:
                self._running = True
                return
            last_error = proc.stdout + proc.stderr + self.server_log()
        raise RuntimeError(f"PostgreSQL did not start:\n{last_error}")

    def stop(self) -> None:
        if self.base is None:
            return
        if self._running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
            self._running = False
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases ------------------------------------------------------------------

    @property
    def data(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError("database names here are lower-case identifiers")
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def server_log(self) -> str:
        assert self.base is not None
        log = self.base / "server.log"
        with contextlib.suppress(OSError):
            return log.read_text(errors="replace")
        return ""

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self._prefix, str(self.bin_dir / tool), *args]
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.base, timeout=120)
        if check and proc.returncode != 0:
            took = time.monotonic() - started
            raise RuntimeError(f"{tool} failed ({proc.returncode}) after {took:.1f} s:\n{proc.stdout}{proc.stderr}")
        return proc
