"""The ``functionary`` command.

    functionary init --members N --threshold M --out DIR     local key ceremony
    functionary run --config FILE                             one member
    functionary devnet [--members 5] [--threshold 4] ...      the whole federation locally
    functionary status [--url URL]                            what a member is doing

Exit status: 0 on success, 2 for bad arguments or configuration (with a
one-line reason, never a traceback), 3 when a member refuses to sign.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coincurve import PrivateKey
from nacl.signing import SigningKey

from consensus.errors import ConsensusError
from consensus.hashes import hash160
from consensus.mainchain import REGTEST
from consensus.peg import PakEntry, PegParams

from .config import (
    ConfigError,
    ExchangeInfo,
    Federation,
    MainchainRpc,
    MemberConfig,
    MemberInfo,
    MemberKeys,
    PegSettings,
)
from .errors import FunctionaryError

EXIT_USAGE = 2
EXIT_REFUSED = 3


def _p2wpkh(pubkey: bytes) -> bytes:
    return b"\x00\x14" + hash160(pubkey)


# --- init -------------------------------------------------------------------------------


def init_federation(
    out: Path,
    members: int,
    threshold: int,
    *,
    host: str = "127.0.0.1",
    p2p_port: int = 7100,
    api_port: int = 8000,
    block_interval: float = 60.0,
    round_timeout: float = 10.0,
    free_coins: int = 0,
    database_url: str | None = None,
    listen_host: str | None = None,
    peg: PegOptions | None = None,
    mainchain_rpc: MainchainRpc | None = None,
) -> Federation:
    """Write DIR/federation.json, DIR/memberI/{member.json,keys.json}, and,
    with free coins, DIR/faucet.json (the key that owns them: test chains only).

    ``host`` may contain ``{i}`` (e.g. ``member{i}`` for one container per
    member); ``listen_host`` is what members bind (default: ``host``)."""
    if not 1 <= threshold <= members <= 15:
        raise ConfigError(f"need 1 <= threshold <= members <= 15, got {threshold} of {members}")
    out.mkdir(parents=True, exist_ok=True)
    if (out / "federation.json").exists():
        raise ConfigError(f"{out / 'federation.json'} exists; refusing to overwrite a federation")
    all_keys = [MemberKeys.generate() for _ in range(members)]
    faucet_script = b""
    if free_coins:
        faucet = PrivateKey(os.urandom(32))
        faucet_script = _p2wpkh(faucet.public_key.format())
        fd = os.open(out / "faucet.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"key": faucet.secret.hex(), "script_pubkey": faucet_script.hex(), "amount": free_coins}, f)
    peg_settings, exchanges = _make_peg(out, all_keys, threshold, peg) if peg is not None else (None, ())
    fed = Federation(
        peg=peg_settings,
        exchanges=exchanges,
        members=tuple(
            MemberInfo(
                index=i,
                name=f"member{i}",
                signing_pubkey=k.signing_key.public_key.format(),
                identity_pubkey=bytes(k.identity.verify_key),
                p2p=(host.format(i=i), p2p_port + i),
                api=f"http://{host.format(i=i)}:{api_port + i}",
            )
            for i, k in enumerate(all_keys)
        ),
        threshold=threshold,
        genesis_time=int(time.time()) - 1,
        block_interval=block_interval,
        round_timeout=round_timeout,
        initial_free_coins=free_coins,
        initial_free_coins_script=faucet_script,
    )
    fed.save(out / "federation.json")
    for i, k in enumerate(all_keys):
        mdir = out / f"member{i}"
        mdir.mkdir(exist_ok=True)
        os.chmod(mdir, 0o700)
        k.save(mdir / "keys.json")
        MemberConfig(
            path=mdir / "member.json",
            member=i,
            federation_file=(out / "federation.json").resolve(),
            keys_file=(mdir / "keys.json").resolve(),
            data_dir=mdir.resolve(),
            database_url=database_url.format(member=i) if database_url else None,
            p2p_listen=((listen_host or host).format(i=i), p2p_port + i),
            api_listen=((listen_host or host).format(i=i), api_port + i),
            log_level="info",
            mainchain_rpc=mainchain_rpc,
        ).save()
    return fed


@dataclass(frozen=True)
class PegOptions:
    threshold: int | None = None
    """Watchmen needed to move peg funds (default: the block threshold)."""
    emergency_keys: int = 3
    emergency_threshold: int = 2
    csv_delay: int = 4032
    pegin_min_depth: int = 102
    exchanges: int = 1
    payout_interval: int = 10


def _save_secret(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)


def _make_peg(
    out: Path, keys: list[MemberKeys], block_threshold: int, opts: PegOptions
) -> tuple[PegSettings, tuple[ExchangeInfo, ...]]:
    """Watchman keys come from the members' key files; the emergency keys and
    the exchanges' PAK keys are written to their own directories, to be
    handed to whoever holds them (never to the members)."""
    emergency = [PrivateKey(os.urandom(32)) for _ in range(opts.emergency_keys)]
    (out / "emergency").mkdir(exist_ok=True)
    os.chmod(out / "emergency", 0o700)
    for i, k in enumerate(emergency):
        _save_secret(out / "emergency" / f"emergency{i}.json", {"key": k.secret.hex()})
    (out / "exchanges").mkdir(exist_ok=True)
    os.chmod(out / "exchanges", 0o700)
    pak: list[PakEntry] = []
    names: list[str] = []
    exchanges: list[ExchangeInfo] = []
    for i in range(opts.exchanges):
        online, offline = PrivateKey(os.urandom(32)), PrivateKey(os.urandom(32))
        # The exchange API key is a separate Ed25519 key: it authenticates
        # requests, while the PAK key authorizes peg-outs on the chain.
        api_key = SigningKey.generate()
        names.append(f"exchange{i}")
        pak.append(PakEntry(online.public_key.format(), offline.public_key.format()))
        exchanges.append(ExchangeInfo(id=names[-1], api_pubkey=bytes(api_key.verify_key)))
        _save_secret(
            out / "exchanges" / f"exchange{i}.json",
            {
                "name": names[-1],
                "online_key": online.secret.hex(),
                "offline_pubkey": offline.public_key.format().hex(),
                "api_key": bytes(api_key).hex(),
            },
        )
        # The offline key stays offline: it only ever signs a PAK list change.
        _save_secret(out / "exchanges" / f"exchange{i}.offline.json", {"offline_key": offline.secret.hex()})
    watchmen = tuple(k.watchman_key.public_key.format() for k in keys if k.watchman_key is not None)
    m = opts.threshold or block_threshold
    k_emergency = opts.emergency_threshold
    if emergency and k_emergency == m:
        # OP_DEPTH tells the branches apart by how many signatures they carry.
        k_emergency = m - 1 if m > 1 else min(m + 1, len(emergency))
    try:
        params = _peg_params(watchmen, m, emergency, k_emergency, opts, tuple(pak))
    except (ValueError, ConsensusError) as e:
        raise ConfigError(f"peg options: {e}") from None
    settings = PegSettings(params=params, pak_names=tuple(names), payout_interval=opts.payout_interval)
    return settings, tuple(exchanges)


def _peg_params(
    watchmen: tuple[bytes, ...],
    m: int,
    emergency: list[PrivateKey],
    k: int,
    opts: PegOptions,
    pak: tuple[PakEntry, ...],
) -> PegParams:
    return PegParams(
        watchman_keys=watchmen,
        peg_threshold=m,
        emergency_keys=tuple(e.public_key.format() for e in emergency),
        emergency_threshold=k if emergency else 0,
        csv_delay=opts.csv_delay,
        pegin_min_depth=opts.pegin_min_depth,
        min_pegin_value=10_000,
        parent=REGTEST,
        pak=pak,
    )


# --- run ----------------------------------------------------------------------------------


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A member's event loop: uvloop when installed (about a tenth more read
    API requests per core than asyncio's loop, measured by bench/read_api),
    else asyncio's own. ``FUNCTIONARY_EVENT_LOOP=asyncio`` chooses asyncio's."""
    if os.environ.get("FUNCTIONARY_EVENT_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def run_member(config_path: Path) -> int:
    import uvicorn

    from .api import create_app
    from .log import event, setup_logging
    from .node import FunctionaryNode, RefuseToSign

    config = MemberConfig.load(config_path)
    federation = Federation.load(config.federation_file)
    keys = MemberKeys.load(config.keys_file)
    logger = setup_logging(config.member, config.log_level)
    node = FunctionaryNode(config, federation, keys, logger)
    try:
        await node.start()
    except RefuseToSign as e:
        print(f"functionary: member {config.member} refuses to sign: {e}", file=sys.stderr)
        return EXIT_REFUSED
    app = create_app(node)

    class _Server(uvicorn.Server):
        # The member owns SIGINT/SIGTERM: uvicorn's own capture would re-raise
        # the signal after serving and kill the process before the node stops.
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    server = _Server(
        uvicorn.Config(
            app,
            host=config.api_listen[0],
            port=config.api_listen[1],
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api_task = asyncio.create_task(server.serve())
    event(
        logger,
        "api_listening",
        url=f"http://{config.api_listen[0]}:{config.api_listen[1]}",
        loop=type(loop).__module__.split(".")[0],
    )
    stop_task = asyncio.create_task(stop.wait())
    waiters: set[asyncio.Future[Any]] = {api_task, stop_task, node.failed}
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(api_task, 5)
    stop_task.cancel()
    await node.stop()
    if node.failed.done():
        print(
            f"functionary: member {config.member} stopped on a fatal error: {node.failed.result()!r}", file=sys.stderr
        )
        return 1
    return 0


# --- devnet -------------------------------------------------------------------------------


def _start_mainchain(data: Path, port: int) -> tuple[subprocess.Popen[bytes], MainchainRpc, str]:
    """The embedded regtest mainchain (a stand-in for bitcoind), with an
    RPC password kept in a 0600 file the members read."""
    chain_dir = data / "mainchain"
    chain_dir.mkdir(parents=True, exist_ok=True)
    password_file = chain_dir / "rpcpassword"
    if not password_file.exists():
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(16).hex())
    password = password_file.read_text().strip()
    log = open(chain_dir / "regtest.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "regtest", "--datadir", str(chain_dir), "--rpcport", str(port),
         "--rpcuser", "devnet", "--rpcpassword", password],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    rpc = MainchainRpc(url=f"http://127.0.0.1:{port}", user="devnet", password_file=password_file, timeout=10.0)
    return proc, rpc, password


def _devnet_federation(
    args: argparse.Namespace, data: Path, fed_file: Path, mainchain: Any, chain_rpc: MainchainRpc
) -> Federation:
    """Fund the mainchain and load (or create) the devnet's federation."""
    miner = mainchain.getnewaddress()
    if mainchain.getblockcount() < 101:
        mainchain.generatetoaddress(101 - mainchain.getblockcount(), miner)
    if fed_file.exists():
        federation = Federation.load(fed_file)
        print(f"devnet: resuming the federation in {data} ({federation.threshold}-of-{federation.n})")
    else:
        federation = init_federation(
            data,
            args.members,
            args.threshold,
            p2p_port=args.p2p_port,
            api_port=args.api_port,
            block_interval=args.block_interval,
            round_timeout=max(1.0, args.block_interval / 2),
            free_coins=21_000_000 * 100_000_000 // 1000,
            peg=PegOptions(csv_delay=144, pegin_min_depth=args.pegin_min_depth, payout_interval=5),
            mainchain_rpc=chain_rpc,
        )
        print(f"devnet: created a {args.threshold}-of-{args.members} federation in {data}")
    return federation


def devnet(args: argparse.Namespace) -> int:
    from .bitcoind import BitcoinRpc, MainchainError

    data = Path(args.data).resolve()
    fed_file = data / "federation.json"
    data.mkdir(parents=True, exist_ok=True)
    chain_proc, chain_rpc, chain_password = _start_mainchain(data, args.mainchain_port)
    mainchain = BitcoinRpc(chain_rpc.url, user="devnet", password=chain_password, timeout=10.0)
    try:
        mainchain.wait_ready(timeout=30)
    except MainchainError as e:
        chain_proc.kill()
        print(f"devnet: the regtest mainchain did not start: {e}", file=sys.stderr)
        return 1
    try:
        federation = _devnet_federation(args, data, fed_file, mainchain, chain_rpc)
    except BaseException:
        # Setup failed after the mainchain started: never leave it running.
        chain_proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            chain_proc.wait(10)
        if chain_proc.poll() is None:
            chain_proc.kill()
        raise
    miner = mainchain.getnewaddress()
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    for i in range(federation.n):
        log = open(data / f"member{i}" / "member.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "functionary", "run", "--config", str(data / f"member{i}" / "member.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    info: dict[str, Any] = {
        "federation": str(fed_file),
        "threshold": federation.threshold,
        "members": [
            {
                "index": m.index,
                "api": m.api,
                "p2p": f"{m.p2p[0]}:{m.p2p[1]}",
                "data_dir": str(data / f"member{m.index}"),
                "log": str(data / f"member{m.index}" / "member.log"),
                "pid": p.pid,
            }
            for m, p in zip(federation.members, procs)
        ],
        "mainchain": {
            "kind": "embedded regtest stand-in for bitcoind (python -m regtest)",
            "rpc_url": chain_rpc.url,
            "rpc_user": "devnet",
            "rpc_password": chain_password,
            "datadir": str(data / "mainchain"),
            "pid": chain_proc.pid,
            "block_interval": args.mainchain_block_interval,
        },
    }
    (data / "devnet.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"devnet: {federation.n} members running; blocks every {federation.block_interval:g}s")
    for m in info["members"]:
        print(f"  member {m['index']}: api {m['api']}  pid {m['pid']}  log {m['log']}")
    print(f"  mainchain: regtest RPC {chain_rpc.url} (user devnet, password in devnet.json)  pid {chain_proc.pid}")
    print(f"devnet: details in {data / 'devnet.json'}; Ctrl-C stops everything")
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    import httpx

    last = -1
    url = federation.members[0].api
    next_mainchain_block = time.time() + args.mainchain_block_interval
    try:
        while not stopping:
            time.sleep(0.5)
            if args.mainchain_block_interval > 0 and time.time() >= next_mainchain_block:
                next_mainchain_block += args.mainchain_block_interval
                with contextlib.suppress(MainchainError):
                    mainchain.generatetoaddress(1, miner)
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping:
                    print(f"devnet: member {i} exited with status {p.returncode}; see its log")
                    stopping = True
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                st = httpx.get(f"{url}/status", timeout=1.0).json()
                for b in reversed(st["last_blocks"]):
                    if b["height"] > last:
                        last = b["height"]
                        print(f"block {b['height']} {b['hash']} signed by {b['signers']}")
    finally:
        print("devnet: stopping")
        for p in [*procs, chain_proc]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for p in [*procs, chain_proc]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.time()))
            if p.poll() is None:
                p.kill()
        for log in logs:
            log.close()
    return 0


# --- status -------------------------------------------------------------------------------


def status(url: str) -> int:
    import httpx

    try:
        st = httpx.get(f"{url.rstrip('/')}/status", timeout=5.0).json()
    except (httpx.HTTPError, ValueError) as e:
        print(f"functionary status: cannot reach {url}: {e}", file=sys.stderr)
        return 1
    print(f"member {st['member']}  tip {st['tip']['height']} {st['tip']['hash']}")
    print(f"working on height {st['round']['height']} round {st['round']['round']}")
    print(f"peers connected: {st['peers_connected']}  mempool: {st['mempool']['count']} txs")
    for b in st["last_blocks"]:
        print(f"  block {b['height']} {b['hash'][:16]}… signed by {b['signers']}")
    return 0


# --- main ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="functionary", description="A member of a federated Bitcoin sidechain.")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("init", help="local key ceremony: keys, configs and the public federation file")
    i.add_argument("--members", type=int, required=True)
    i.add_argument("--threshold", type=int, required=True)
    i.add_argument("--out", required=True)
    i.add_argument("--host", default="127.0.0.1", help="members' address; may contain {i}, e.g. member{i}")
    i.add_argument("--listen-host", default=None, help="address members bind (default: --host)")
    i.add_argument("--keep-existing", action="store_true", help="do nothing if DIR/federation.json exists")
    i.add_argument("--p2p-port", type=int, default=7100)
    i.add_argument("--api-port", type=int, default=8000)
    i.add_argument("--block-interval", type=float, default=60.0)
    i.add_argument("--round-timeout", type=float, default=10.0)
    i.add_argument("--free-coins", type=int, default=0, help="test chains only: satoshis created in genesis")
    i.add_argument("--database-url", default=None, help="e.g. postgresql+psycopg://host/db{member}")
    i.add_argument("--mainchain-rpc-url", default=None, help="each member's bitcoind JSON-RPC URL")
    i.add_argument("--mainchain-rpc-cookie", default=None, help="bitcoind's cookie file, as the members see it")
    i.add_argument("--no-peg", action="store_true", help="a chain with no peg (no watchmen keys)")
    i.add_argument("--peg-threshold", type=int, default=None, help="watchmen needed to move peg funds")
    i.add_argument("--emergency-keys", type=int, default=3)
    i.add_argument("--emergency-threshold", type=int, default=2)
    i.add_argument("--csv-delay", type=int, default=4032, help="mainchain blocks before the emergency keys may spend")
    i.add_argument("--pegin-min-depth", type=int, default=102)
    i.add_argument("--exchanges", type=int, default=1, help="PAK entries (exchanges allowed to peg out)")
    r = sub.add_parser("run", help="run one member")
    r.add_argument("--config", required=True)
    d = sub.add_parser("devnet", help="the whole federation on this machine")
    d.add_argument("--members", type=int, default=5)
    d.add_argument("--threshold", type=int, default=4)
    d.add_argument("--block-interval", type=float, default=5.0)
    d.add_argument("--data", default="devnet-data")
    d.add_argument("--api-port", type=int, default=8000)
    d.add_argument("--p2p-port", type=int, default=7100)
    d.add_argument("--mainchain-port", type=int, default=18443)
    d.add_argument("--mainchain-block-interval", type=float, default=10.0, help="seconds; 0 mines only on demand")
    d.add_argument("--pegin-min-depth", type=int, default=2)
    s = sub.add_parser("status", help="what a member is doing")
    s.add_argument("--url", default="http://127.0.0.1:8000")
    __import__("functionary.wallet_cli", fromlist=["mount"]).mount(sub)  # functionary wallet …: its own parser
    __import__("functionary.audit", fromlist=["add_parser"]).add_parser(sub)  # functionary audit …
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            if args.keep_existing and (Path(args.out) / "federation.json").exists():
                print(f"{args.out}/federation.json exists; keeping it")
                return 0
            fed = init_federation(
                Path(args.out),
                args.members,
                args.threshold,
                host=args.host,
                p2p_port=args.p2p_port,
                api_port=args.api_port,
                block_interval=args.block_interval,
                round_timeout=args.round_timeout,
                free_coins=args.free_coins,
                database_url=args.database_url,
                listen_host=args.listen_host,
                mainchain_rpc=MainchainRpc(url=args.mainchain_rpc_url, cookie_file=Path(args.mainchain_rpc_cookie))
                if args.mainchain_rpc_url and args.mainchain_rpc_cookie
                else None,
                peg=None
                if args.no_peg
                else PegOptions(
                    threshold=args.peg_threshold,
                    emergency_keys=args.emergency_keys,
                    emergency_threshold=args.emergency_threshold,
                    csv_delay=args.csv_delay,
                    pegin_min_depth=args.pegin_min_depth,
                    exchanges=args.exchanges,
                ),
            )
            print(f"wrote a {fed.threshold}-of-{fed.n} federation to {args.out}")
            return 0
        if args.command == "run":
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                return runner.run(run_member(Path(args.config)))
        if args.command == "devnet":
            return devnet(args)
        if args.command == "status":
            return status(args.url)
        if args.command == "audit":
            from .audit import run as run_audit

            return run_audit(args)
    except ConfigError as e:
        print(f"functionary: {e.code}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except FunctionaryError as e:
        print(f"functionary: {e.code}: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
