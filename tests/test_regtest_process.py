"""The embedded chain as a process: persistence across restarts and kills,
authentication files, binding, exit statuses. These need the stand-in itself
(a real bitcoind is not restarted by tests), so they do not use MAINCHAIN_RPC_URL."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from functionary.bitcoind import BitcoinRpc, RpcAuthError, RpcInWarmup
from regtest.node import Node
from regtest.params import REGTEST
from regtest.server import Auth, serve
from regtest.testing import RegtestProcess, free_port


def test_restart_resumes_chain_wallet_and_mempool(tmp_path: Path) -> None:
    proc = RegtestProcess(tmp_path / "node")
    proc.start()
    rpc = proc.rpc()
    address = rpc.getnewaddress()
    rpc.generatetoaddress(101, address)
    receiver = rpc.getnewaddress()
    confirmed = rpc.sendtoaddress(receiver, Decimal("2"), fee_rate=2)
    rpc.generatetoaddress(1, address)
    pending = rpc.sendtoaddress(receiver, Decimal("3"), fee_rate=2)
    before = {
        "tip": rpc.getbestblockhash(),
        "height": rpc.getblockcount(),
        "balance": rpc.getbalance(),
        "unspent": sorted((u["txid"], u["vout"]) for u in rpc.listunspent(minconf=0)),
    }
    assert proc.stop() == 0
    assert not proc.cookie_file.exists()  # removed at a clean stop, as Core does

    proc.start()  # same data directory and port; a new cookie
    # The same client keeps working: it re-reads the cookie when the server refuses the old one.
    assert rpc.getbestblockhash() == before["tip"]
    assert rpc.getblockcount() == before["height"]
    assert rpc.getbalance() == before["balance"]
    assert sorted((u["txid"], u["vout"]) for u in rpc.listunspent(minconf=0)) == before["unspent"]
    assert rpc.getaddressinfo(receiver)["ismine"] is True
    assert pending in rpc.getrawmempool()  # saved at shutdown, reloaded at start
    assert rpc.getrawtransaction(confirmed, True)["confirmations"] == 1
    rpc.close()
    proc.stop()


def test_blocks_survive_sigkill(tmp_path: Path) -> None:
    proc = RegtestProcess(tmp_path / "node")
    proc.start()
    with proc.rpc() as rpc:
        hashes = rpc.generatetoaddress(20, rpc.getnewaddress())
        proc.kill()  # no shutdown: whatever was acknowledged must already be on disk
        assert proc.cookie_file.exists()  # a killed node leaves its cookie behind
        proc.start()
        assert rpc.getblockcount() == 20 and rpc.getbestblockhash() == hashes[-1]
    proc.stop()


def test_cookie_file_and_user_password(tmp_path: Path) -> None:
    with RegtestProcess(tmp_path / "cookie") as proc:
        secret = proc.cookie_file.read_text()
        user, _, password = secret.partition(":")
        assert user == "__cookie__" and len(password) == 64 and int(password, 16) >= 0
        assert stat.S_IMODE(proc.cookie_file.stat().st_mode) == 0o600
        with BitcoinRpc(proc.url, user=user, password=password) as rpc:
            assert rpc.getblockcount() == 0
        with BitcoinRpc(proc.url, user=user, password="0" * 64) as rpc, pytest.raises(RpcAuthError):
            rpc.getblockcount()

    with RegtestProcess(tmp_path / "userpass", rpcuser="alice", rpcpassword="hunter2") as proc:
        assert not proc.cookie_file.exists()
        with BitcoinRpc(proc.url.replace("http://", "http://alice:hunter2@")) as rpc:
            assert rpc.getblockcount() == 0
        with BitcoinRpc(proc.url, user="alice", password="hunter3") as rpc, pytest.raises(RpcAuthError):
            rpc.getblockcount()
    assert stat.S_IMODE((tmp_path / "userpass" / "regtest.sqlite3").stat().st_mode) == 0o600


def test_binds_loopback_only_and_refuses_a_taken_port(tmp_path: Path) -> None:
    with RegtestProcess(tmp_path / "a") as proc:
        # Listening on 127.0.0.1, not on every interface.
        out = subprocess.run(["ss", "-ltnH", f"sport = :{proc.port}"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            assert out.stdout.strip(), "nothing listening?"
            assert all("127.0.0.1:" in line for line in out.stdout.strip().splitlines())
        # A second node on the same port exits with status 1.
        second = RegtestProcess(tmp_path / "b", port=proc.port)
        with pytest.raises(RuntimeError, match="status 1"):
            second.start(timeout=20)


def test_refuses_a_datadir_of_another_network(tmp_path: Path) -> None:
    datadir = tmp_path / "node"
    with RegtestProcess(datadir):
        pass
    db = sqlite3.connect(datadir / "regtest.sqlite3")
    db.execute("UPDATE meta SET value = 'main' WHERE key = 'network'")
    db.commit()
    db.close()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    result = subprocess.run(
        [sys.executable, "-m", "regtest", "--datadir", str(datadir), "--rpcport", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "holds a main chain" in result.stderr


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    result = subprocess.run(
        [sys.executable, "-m", "regtest", "--datadir", str(tmp_path), "--rpcuser", "only-user"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2


def test_warmup_answers_minus_28(tmp_path: Path) -> None:
    """While the node loads, calls get RPC_IN_WARMUP (in-process: the window is short)."""
    node = Node(tmp_path, REGTEST)
    port = free_port()
    server = serve(node, port, Auth("u:p"))
    try:
        with BitcoinRpc(f"http://127.0.0.1:{port}", user="u", password="p") as rpc:
            with pytest.raises(RpcInWarmup, match="Loading block index"):
                rpc.getblockcount()
            node.load()
            assert rpc.getblockcount() == 0
    finally:
        server.shutdown()
        server.server_close()
        node.shutdown()


def test_no_listener_left_after_stop(tmp_path: Path) -> None:
    proc = RegtestProcess(tmp_path / "node")
    proc.start()
    port = proc.port
    assert proc.stop() == 0
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
