"""`functionary devnet` as a subprocess, for tests that want the whole thing
(members, peg, the embedded regtest mainchain) exactly as a user starts it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tests.federation import free_port_run

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_for(pred: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """The first truthy value of ``pred``, polled until ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def running_devnet(
    data: Path, members: int, threshold: int, *extra: str
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """Start ``functionary devnet`` on free loopback ports with data in
    ``data``; yield the process and its devnet.json once written. Stopped
    with Ctrl-C (SIGINT) at the end, killed if it does not stop."""
    # The devnet gives member i the ports base + i: one run of free ports
    # holds the API ports, then the peer ports, then the mainchain's.
    base = free_port_run(2 * members + 1)
    ports = list(range(base, base + 2 * members + 1))
    proc = subprocess.Popen(
        [sys.executable, "-m", "functionary", "devnet", "--members", str(members), "--threshold", str(threshold),
         "--data", str(data), "--api-port", str(ports[0]), "--p2p-port", str(ports[members]),
         "--mainchain-port", str(ports[2 * members]), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        info = wait_for(
            lambda: (data / "devnet.json").exists() and json.loads((data / "devnet.json").read_text()),
            60,
            "devnet.json",
        )
        yield proc, info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
