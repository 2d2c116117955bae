"""``functionary wallet``: the user and exchange wallet on the command line.

    functionary wallet --wallet FILE [--api URL] [--devnet DIR] [--mainchain-url URL] COMMAND ...

    command                                        does
    new [--federation FILE]                        create the wallet file (0600) for a federation
    address [--confidential]                       a fresh receiving address (ert1…, or el1… confidential)
    balance                                        scan new blocks, then the unblinded balance
    send ADDRESS AMOUNT [--explicit]               pay AMOUNT BTC (confidential unless --explicit)
    pegin-address                                  a fresh mainchain address that pegs in to this wallet
    claim MAINCHAIN_TXID [--explicit]              claim a peg-in once it is deep enough
    pegout-address --pak-key FILE [--kind K]       an exchange's next peg-out address (K: p2wpkh,
                                                   p2pkh, p2sh-p2wpkh)
    pegout ADDRESS AMOUNT --pak-key FILE           burn AMOUNT BTC for the watchmen to pay ADDRESS
    import-key KEYFILE                             also spend P2WPKH of a key file's "key" (the faucet)
    rescan                                         forget scanned state; the next scan starts at genesis

Where things are found: ``--api`` names a member's API; ``--devnet DIR``
reads DIR/devnet.json (a member's API and the mainchain RPC) and
DIR/federation.json (for ``new``); otherwise the first member API in the
wallet file. The mainchain RPC (``claim`` only) is ``--mainchain-url``
(``http://user:password@host:port``, or with ``--mainchain-cookie``), else
the devnet's.

Exit status: 0 done; 2 bad input (arguments, addresses, amounts, funds,
files), with one line on stderr; 1 when the member or the mainchain node
refused or could not be reached (the member's JSON error code is shown).
Never a traceback. ``--json`` prints results as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn

from .bitcoind import BitcoinRpc, MainchainError
from .config import ConfigError, Federation
from .wallet import (
    DEFAULT_FEE_RATE,
    PEGOUT_KINDS,
    ExchangeKey,
    MainchainUnavailable,
    MemberApi,
    Wallet,
    WalletError,
    WalletFileError,
    decode_address,
    decode_mainchain_address,
    format_btc,
    load_key_file,
    parse_btc,
    wallet_lock,
)

EXIT_REMOTE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="functionary wallet", description="The sidechain wallet: payments, peg-in and peg-out.")
    p.add_argument("--wallet", required=True, help="the wallet file (created by 'new', mode 0600)")
    p.add_argument("--api", help="a member's API URL")
    p.add_argument("--devnet", help="a devnet directory: its devnet.json gives the API and the mainchain RPC")
    p.add_argument("--mainchain-url", help="mainchain JSON-RPC, http://user:password@host:port")
    p.add_argument("--mainchain-cookie", help="bitcoind's .cookie file, for --mainchain-url without a password")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    n = sub.add_parser("new", help="create the wallet file")
    n.add_argument("--federation", help="federation.json (default: the devnet's)")
    a = sub.add_parser("address", help="a fresh receiving address")
    a.add_argument("--confidential", action="store_true", help="the el1… form, carrying the blinding pubkey")
    sub.add_parser("balance", help="scan new blocks and show the balance")
    s = sub.add_parser("send", help="pay a sidechain address")
    s.add_argument("address")
    s.add_argument("amount", help="BTC, e.g. 0.25")
    s.add_argument("--explicit", action="store_true", help="leave the payment in the clear")
    s.add_argument("--fee-rate", type=float, default=DEFAULT_FEE_RATE, help="sat/vB")
    sub.add_parser("pegin-address", help="a fresh mainchain peg-in address")
    c = sub.add_parser("claim", help="claim a peg-in on the sidechain")
    c.add_argument("txid", help="the mainchain transaction paying a peg-in address")
    c.add_argument("--explicit", action="store_true", help="leave the claimed output in the clear")
    c.add_argument("--fee-rate", type=float, default=DEFAULT_FEE_RATE, help="sat/vB")
    c.add_argument(
        "--no-depth-check", action="store_true", help="submit even if too shallow (to see the chain's reason)"
    )
    pa = sub.add_parser("pegout-address", help="an exchange's next peg-out address")
    pa.add_argument("--pak-key", required=True, help="the exchange's PAK key file (exchanges/exchangeN.json)")
    pa.add_argument("--kind", choices=PEGOUT_KINDS, default="p2wpkh")
    po = sub.add_parser("pegout", help="peg out to a mainchain address")
    po.add_argument("address")
    po.add_argument("amount", help="BTC, e.g. 0.5")
    po.add_argument("--pak-key", required=True, help="the exchange's PAK key file")
    po.add_argument("--fee-rate", type=float, default=DEFAULT_FEE_RATE, help="sat/vB")
    ik = sub.add_parser("import-key", help="spend P2WPKH of a key file's 'key' (e.g. the devnet faucet)")
    ik.add_argument("keyfile")
    sub.add_parser("rescan", help="start scanning again from genesis")
    return p


# --- Where things are ------------------------------------------------------------------------


def _devnet_info(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.devnet:
        return None
    path = Path(args.devnet) / "devnet.json"
    try:
        info = json.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e})") from None
    if not isinstance(info, dict):
        raise UsageError(f"{path}: not a devnet description")
    return info


def _api_url(args: argparse.Namespace, wallet: Wallet) -> str:
    if args.api:
        return str(args.api)
    info = _devnet_info(args)
    if info is not None:
        try:
            return str(info["members"][0]["api"])
        except (KeyError, IndexError, TypeError):
            raise UsageError(f"{args.devnet}/devnet.json names no member API") from None
    if wallet.apis:
        return wallet.apis[0]
    raise UsageError("no member API: give --api URL or --devnet DIR")


def _mainchain(args: argparse.Namespace) -> BitcoinRpc:
    if args.mainchain_url:
        return BitcoinRpc(args.mainchain_url, cookie_file=args.mainchain_cookie, timeout=30.0)
    info = _devnet_info(args)
    if info is not None:
        try:
            mc = info["mainchain"]
            return BitcoinRpc(mc["rpc_url"], user=mc["rpc_user"], password=mc["rpc_password"], timeout=30.0)
        except (KeyError, TypeError):
            raise UsageError(f"{args.devnet}/devnet.json names no mainchain RPC") from None
    raise UsageError("claim needs the mainchain RPC: give --mainchain-url URL or --devnet DIR")


def _federation_file(args: argparse.Namespace) -> Path:
    if args.federation:
        return Path(args.federation)
    if args.devnet:
        return Path(args.devnet) / "federation.json"
    raise UsageError("new needs --federation FILE or --devnet DIR")


@contextmanager
def _opened(args: argparse.Namespace) -> Iterator[Wallet]:
    path = Path(args.wallet)
    with wallet_lock(path):
        yield Wallet.open(path)


# --- Commands ----------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, human: str, data: dict[str, Any]) -> None:
    print(json.dumps(data) if args.json else human)


def _run(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "new":
        path = Path(args.wallet)
        fed_path = _federation_file(args)
        federation = Federation.load(fed_path)
        wallet = Wallet.create(path, federation)
        _emit(
            args,
            f"created {path} for federation {federation.chain_id.hex()[:16]}…",
            {"wallet": str(path), "chain_id": federation.chain_id.hex()},
        )
        return 0
    with ExitStack() as stack:
        wallet = stack.enter_context(_opened(args))
        if cmd == "address":
            address = wallet.new_address(confidential=args.confidential)
            _emit(args, address, {"address": address})
            return 0
        if cmd == "pegin-address":
            address = wallet.pegin_address()
            claim_script = wallet.pegins[-1].claim_script
            _emit(args, address, {"address": address, "claim_script": claim_script.hex()})
            return 0
        if cmd == "pegout-address":
            exchange = ExchangeKey.load(Path(args.pak_key))
            address = wallet.pegout_address(exchange, args.kind)
            _emit(args, address, {"address": address, "kind": args.kind})
            return 0
        if cmd == "import-key":
            wallet.import_key(load_key_file(Path(args.keyfile)))
            _emit(args, "imported; the next scan starts at genesis", {"imported": len(wallet.imported)})
            return 0
        if cmd == "rescan":
            wallet.rescan()
            _emit(args, "the next scan starts at genesis", {"height": wallet.scan_height})
            return 0
        # Bad input is refused before any member is asked anything.
        if cmd == "send":
            decode_address(args.address)
            amount = parse_btc(args.amount)
        elif cmd == "pegout":
            exchange = ExchangeKey.load(Path(args.pak_key))
            decode_mainchain_address(args.address, wallet.peg.parent)
            amount = parse_btc(args.amount)
        elif cmd == "claim":
            mainchain = stack.enter_context(_mainchain(args))
        api = stack.enter_context(MemberApi(_api_url(args, wallet)))
        wallet.sync(api)
        if cmd == "balance":
            b = wallet.balance()
            _emit(
                args,
                f"{format_btc(b.confirmed)} BTC"
                + (f" (+{format_btc(b.locked)} BTC in unconfirmed spends)" if b.locked else "")
                + f"; {b.utxos} outputs, {b.confidential_utxos} confidential; scanned to height {b.height}"
                + (f"; {b.unreadable} outputs we cannot unblind" if b.unreadable else ""),
                {
                    "confirmed": b.confirmed,
                    "locked": b.locked,
                    "utxos": b.utxos,
                    "confidential_utxos": b.confidential_utxos,
                    "unreadable": b.unreadable,
                    "height": b.height,
                },
            )
            return 0
        if cmd == "send":
            sent = wallet.send(api, args.address, amount, explicit=args.explicit, fee_rate=args.fee_rate)
            _emit(args, sent.txid_hex, {"txid": sent.txid_hex, "fee": sent.fee, "change": sent.change})
            return 0
        if cmd == "claim":
            sent = wallet.claim(
                api,
                mainchain,
                args.txid,
                explicit=args.explicit,
                fee_rate=args.fee_rate,
                check_depth=not args.no_depth_check,
            )
            amount = sum(o.value.amount for o in sent.tx.outputs if o.is_explicit and o.script_pubkey)
            _emit(args, sent.txid_hex, {"txid": sent.txid_hex, "fee": sent.fee, "explicit_amount": amount})
            return 0
        if cmd == "pegout":
            record = wallet.pegout(api, args.address, amount, exchange, fee_rate=args.fee_rate)
            _emit(
                args,
                record.txid_hex,
                {
                    "txid": record.txid_hex,
                    "vout": record.vout,
                    "amount": record.amount,
                    "destination": record.destination.hex(),
                    "address": record.address,
                    "key_index": record.key_index,
                    "fee": record.fee,
                },
            )
            return 0
    raise UsageError(f"unknown command {cmd!r}")  # pragma: no cover - argparse restricts the choices


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        print(f"functionary wallet: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _run(args)
    except UsageError as e:
        print(f"functionary wallet: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, WalletFileError) as e:
        print(f"functionary wallet: {e.code}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except MainchainError as e:
        print(f"functionary wallet: {MainchainUnavailable.__name__}: {e}", file=sys.stderr)
        return EXIT_REMOTE
    except WalletError as e:
        print(f"functionary wallet: {e.code}: {e}", file=sys.stderr)
        return EXIT_REMOTE if e.remote else EXIT_USAGE
    except OSError as e:
        print(f"functionary wallet: {e}", file=sys.stderr)
        return EXIT_REMOTE
    except KeyboardInterrupt:
        print("functionary wallet: interrupted", file=sys.stderr)
        return 130


class _RunWallet(argparse.Action):
    """Runs ``functionary wallet …`` as soon as argparse meets it and exits
    with its status (as argparse's own --version does): the wallet parses its
    own arguments."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parser.exit(main(list(values)))


def mount(sub: Any) -> None:
    """Add ``wallet`` to the ``functionary`` command's subparsers."""
    w = sub.add_parser(
        "wallet", help="the user wallet: addresses, balance, payments, peg-in and peg-out", prefix_chars="+",
        add_help=False,
    )  # fmt: skip
    w.add_argument("args", nargs=argparse.REMAINDER, action=_RunWallet)


if __name__ == "__main__":
    sys.exit(main())
