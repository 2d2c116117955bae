"""`functionary devnet`: the README's run command, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from functionary.bitcoind import BitcoinRpc
from tests.federation import free_port_run

ROOT = Path(__file__).resolve().parents[1]


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _height(url: str) -> int:
    try:
        return int(httpx.get(f"{url}/blocks/tip/height", timeout=1).text)
    except (httpx.HTTPError, ValueError):
        return -1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive: the devnet must have reaped it.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _start(data: Path, api: int, p2p: int, chain: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "functionary", "devnet", "--members", "3", "--threshold", "2",
         "--block-interval", "1", "--data", str(data), "--api-port", str(api), "--p2p-port", str(p2p),
         "--mainchain-port", str(chain), "--mainchain-block-interval", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_devnet_runs_stops_on_ctrl_c_and_resumes(tmp_path):
    base = free_port_run(7)  # member i gets base + i
    api, p2p, chain = base, base + 3, base + 6
    data = tmp_path / "dn"
    proc = _start(data, api, p2p, chain)
    try:
        info = _wait(
            lambda: (data / "devnet.json").exists() and json.loads((data / "devnet.json").read_text()),
            30,
            "devnet.json",
        )
        assert [m["api"] for m in info["members"]] == [f"http://127.0.0.1:{api + i}" for i in range(3)]
        assert all(Path(m["data_dir"]).is_dir() and _alive(m["pid"]) for m in info["members"])
        urls = [m["api"] for m in info["members"]]
        # The embedded regtest mainchain answers with the credentials devnet.json gives.
        mc = info["mainchain"]
        rpc = BitcoinRpc(mc["rpc_url"], user=mc["rpc_user"], password=mc["rpc_password"])
        assert rpc.getblockcount() >= 101 and _alive(mc["pid"])
        fed = json.loads((data / "federation.json").read_text())
        assert len(fed["peg"]["watchman_keys"]) == 3 and fed["peg"]["pegin_min_depth"] == 2
        _wait(lambda: min(_height(u) for u in urls) >= 3, 60, "height 3 on every member")
        before = max(_height(u) for u in urls)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "devnet: stopping" in out and "block 1 " in out, out
        assert not any(_alive(m["pid"]) for m in info["members"]), "a member outlived the devnet"
        assert not _alive(mc["pid"]), "the mainchain outlived the devnet"
    finally:
        if proc.poll() is None:
            proc.kill()
    # Again on the same directory: the same chain goes on.
    proc = _start(data, api, p2p, chain)
    try:
        _wait(lambda: _height(f"http://127.0.0.1:{api}") > before, 60, "the resumed chain to pass its old tip")
        first = httpx.get(f"http://127.0.0.1:{api}/block-height/1", timeout=2).text
        assert first == httpx.get(f"http://127.0.0.1:{api + 1}/block-height/1", timeout=2).text
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert "resuming the federation" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
