"""A mainchain for tests: the embedded regtest process, or a real bitcoind.

| ``MAINCHAIN_RPC_URL``                   | ``mainchain(tmp)`` yields                                    |
|-----------------------------------------|--------------------------------------------------------------|
| unset                                   | a fresh ``python -m regtest`` on a free 127.0.0.1 port, its  |
|                                         | data directory under ``tmp``; stopped (SIGTERM, then SIGKILL |
|                                         | after 10 s) when the block exits                             |
| ``http://user:password@host:port``      | that node, which must run ``-regtest``; a wallet is loaded   |
|                                         | (or created) for the tests                                   |

Tests written against ``Mainchain.rpc`` therefore run unchanged against
Bitcoin Core. Tests that need the process itself (restart, kill, cookie
file) check ``Mainchain.external`` and skip.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from functionary.bitcoind import (
    BitcoinRpc,
    RpcAuthError,
    RpcConnectionError,
    RpcError,
    RpcInWarmup,
    RpcTimeout,
    RpcWalletNotFound,
)

ENV_URL = "MAINCHAIN_RPC_URL"
TEST_WALLET = "regtest-tests"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port free right now (another process could take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RegtestProcess:
    """One ``python -m regtest`` process."""

    def __init__(
        self,
        datadir: Path,
        port: int | None = None,
        *,
        rpcuser: str | None = None,
        rpcpassword: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.datadir = datadir
        self.port = port or free_port()
        self.rpcuser = rpcuser
        self.rpcpassword = rpcpassword
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cookie_file(self) -> Path:
        return self.datadir / ".cookie"

    def rpc(self, timeout: float = 30.0, wallet: str | None = None) -> BitcoinRpc:
        if self.rpcpassword is not None:
            return BitcoinRpc(self.url, user=self.rpcuser, password=self.rpcpassword, timeout=timeout, wallet=wallet)
        return BitcoinRpc(self.url, cookie_file=self.cookie_file, timeout=timeout, wallet=wallet)

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait, with a deadline, until RPC answers."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "regtest", "--datadir", str(self.datadir), "--rpcport", str(self.port)]
        if self.rpcpassword is not None:
            args += ["--rpcuser", self.rpcuser or "", "--rpcpassword", self.rpcpassword]
        args += self.extra_args
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.datadir / "stdout.log", "ab") as out, open(self.datadir / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=_REPO_ROOT)
        deadline = time.monotonic() + timeout
        with self.rpc(timeout=2.0) as rpc:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise RuntimeError(f"regtest exited with status {code}: {self.stderr()[-2000:]}")
                try:
                    rpc.getblockcount()
                    return
                except (RpcConnectionError, RpcInWarmup, RpcTimeout, RpcAuthError):
                    if time.monotonic() > deadline:
                        self.kill()
                        raise TimeoutError(f"regtest on port {self.port} not ready in {timeout} s") from None
                time.sleep(0.05)

    def stderr(self) -> str:
        try:
            return (self.datadir / "stderr.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, and SIGKILL if it has not exited within ``timeout``; the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: no clean shutdown (the mempool is not saved, the cookie stays)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> RegtestProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Mainchain:
    rpc: BitcoinRpc  # wallet-capable client
    external: bool
    process: RegtestProcess | None


def ensure_wallet(rpc: BitcoinRpc) -> BitcoinRpc:
    """A client whose wallet calls work: Core needs a loaded wallet (and a
    /wallet/ path when several are loaded); the stand-in always has one."""
    loaded = rpc.call("listwallets")
    if len(loaded) == 1:
        return rpc
    if TEST_WALLET not in loaded:
        try:
            rpc.call("loadwallet", TEST_WALLET)
        except RpcError:
            rpc.call("createwallet", TEST_WALLET)
    return rpc.with_wallet(TEST_WALLET)


@contextlib.contextmanager
def mainchain(tmp: Path, extra_args: Sequence[str] = ()) -> Iterator[Mainchain]:
    url = os.environ.get(ENV_URL)
    if url:
        rpc = BitcoinRpc(url, timeout=60.0)
        try:
            info = rpc.wait_ready(timeout=30.0)
            if info.get("chain") != "regtest":
                raise RuntimeError(f"{ENV_URL} points at a {info.get('chain')} node; the tests need -regtest")
            try:
                wallet_rpc = ensure_wallet(rpc)
            except RpcWalletNotFound:
                wallet_rpc = rpc
            yield Mainchain(wallet_rpc, True, None)
        finally:
            rpc.close()
        return
    proc = RegtestProcess(tmp / "regtest", extra_args=extra_args)
    proc.start()
    rpc = proc.rpc(timeout=60.0)
    try:
        yield Mainchain(rpc, False, proc)
    finally:
        rpc.close()
        proc.stop()
