"""``python -m regtest``: run the embedded regtest mainchain.

    python -m regtest --datadir D --rpcport P [--rpcuser U --rpcpassword W]
                      [--mempoolfullrbf] [--fallbackfee BTC/kvB] [--feerate BTC/kvB]

Without ``--rpcpassword`` a cookie ``D/.cookie`` is written (``__cookie__:<hex>``,
mode 0600). Logs go to ``D/debug.log`` (and stderr with ``--printtoconsole``).
The process prints ``ready`` on stdout once RPC calls are answered (before
that they get -28, warming up), and stops cleanly on SIGTERM, SIGINT or the
``stop`` RPC.

Exit status: 0 after a clean stop; 1 when the data directory cannot be used
or the port cannot be bound; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import FrameType

from .node import Node
from .params import REGTEST
from .primitives import COIN
from .server import Auth, serve
from .store import StoreError


def _btc_per_kvb(text: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return int(value * COIN)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m regtest", description="An embedded Bitcoin regtest chain")
    parser.add_argument("--datadir", type=Path, required=True)
    parser.add_argument("--rpcport", type=int, default=18443)
    parser.add_argument("--rpcuser")
    parser.add_argument("--rpcpassword")
    parser.add_argument("--rpcpasswordfile", type=Path, help="read the RPC password from this file")
    parser.add_argument("--rpcbind", default="127.0.0.1", help="address to listen on (default loopback only)")
    parser.add_argument("--mempoolfullrbf", action="store_true", help="every transaction replaceable (Core 28)")
    parser.add_argument("--fallbackfee", type=_btc_per_kvb, default=20_000, help="wallet fee rate, BTC/kvB")
    parser.add_argument("--feerate", type=_btc_per_kvb, help="what estimatesmartfee always answers, BTC/kvB")
    parser.add_argument("--printtoconsole", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.rpcuser) != bool(args.rpcpassword):
        parser.error("give both --rpcuser and --rpcpassword, or neither (cookie authentication)")

    datadir: Path = args.datadir
    datadir.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(datadir / "debug.log")]
    if args.printtoconsole:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers)
    log = logging.getLogger("regtest")

    node = Node(
        datadir,
        REGTEST,
        full_rbf=args.mempoolfullrbf,
        fallback_feerate=args.fallbackfee,
        fixed_feerate=args.feerate,
    )
    if args.rpcpasswordfile is not None:
        try:
            args.rpcpassword = args.rpcpasswordfile.read_text().strip()
        except OSError as e:
            print(f"regtest: cannot read {args.rpcpasswordfile}: {e.strerror}", file=sys.stderr)
            return 2
    auth = Auth(f"{args.rpcuser}:{args.rpcpassword}") if args.rpcpassword else Auth.cookie(datadir)
    stop = threading.Event()
    try:
        server = serve(node, args.rpcport, auth, args.rpcbind)
    except OSError as e:
        auth.remove_cookie()
        print(f"regtest: cannot bind {args.rpcbind}:{args.rpcport}: {e}", file=sys.stderr)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("regtest stand-in listening on %s:%d, datadir %s", args.rpcbind, args.rpcport, datadir)
    try:
        node.load()
    except StoreError as e:
        server.shutdown()
        auth.remove_cookie()
        print(f"regtest: {e}", file=sys.stderr)
        return 1
    print("ready", flush=True)
    while not stop.wait(0.1):
        if node.stop_requested:
            break
    log.info("stopping")
    server.shutdown()
    server.server_close()
    node.shutdown()
    auth.remove_cookie()
    return 0


if __name__ == "__main__":
    sys.exit(main())
