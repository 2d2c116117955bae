"""``functionary audit``: check a member's chain without trusting the member.

Everything comes over the member's read API; nothing it says about itself is
believed. For every height from genesis to the tip:

| check                    | how                                                      | failure (rule)        |
|--------------------------|----------------------------------------------------------|-----------------------|
| hash is what was named   | parse header and block, hash them ourselves              | HashMismatch          |
| genesis                  | recomputed from the federation file                      | WrongGenesis          |
| links                    | height and prev hash chain from the block below          | BadHeight/BadPrevHash |
| m signatures             | ``solution_signers`` on the federation's keys            | BadBlockSignature, …  |
| merkle root              | recomputed from the transactions                         | BadMerkleRoot         |
| every transaction        | replay into a ChainState built from the federation file  | the ConsensusError    |
| reserves (with RPC)      | federation's mainchain UTXOs >= pegged-in - burned       | ReserveShortfall      |

Peg-ins are replayed in trusting mode: every rule the bytes decide, not the
mainchain depth (the signers checked it when the block was made). Once a
block fails to connect, later blocks are still checked for signatures, links
and merkle roots, but no longer replayed (their state would be fiction).

The core is :func:`audit_chain`, fed by a :class:`ChainFetcher`, so tests can
hand it a tampered chain without a server.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from consensus.block import Block
from consensus.chainstate import genesis_block
from consensus.errors import BadHeight, BadMerkleRoot, BadPrevHash, ConsensusError
from consensus.header import BlockHeader, solution_signers
from consensus.peg import PegInWitness
from consensus.standard import OutputKind, classify_output

from .bitcoind import MainchainError, sats
from .config import ConfigError, Federation

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class AuditError(Exception):
    """A rule only the audit checks (the chain's own rules are ConsensusErrors)."""


class HashMismatch(AuditError):
    """The header or block served does not hash to the hash the API named."""


class WrongGenesis(AuditError):
    """Height 0 is not the genesis the federation file defines."""


class ReserveShortfall(AuditError):
    """The federation's mainchain coins are fewer than what it owes."""


class FetchError(Exception):
    """The member's API could not be reached or answered nonsense."""


class ChainFetcher(Protocol):
    """What the audit needs from a member: raw bytes, nothing interpreted."""

    def tip_height(self) -> int: ...

    def block_hash(self, height: int) -> bytes:
        """The hash at ``height``, internal byte order."""
        ...

    def header(self, block_hash: bytes) -> bytes: ...

    def block(self, block_hash: bytes) -> bytes: ...


class Mainchain(Protocol):
    """A bitcoind JSON-RPC client (functionary.bitcoind.BitcoinRpc fits)."""

    def call(self, method: str, *params: Any, timeout: float | None = None) -> Any: ...


@dataclass(frozen=True)
class Failure:
    height: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"height {self.height}: {self.rule}: {self.detail}"


@dataclass
class AuditReport:
    tip_height: int = -1
    blocks_checked: int = 0
    signatures_checked: int = 0
    replayed_to: int = 0
    failures: list[Failure] = field(default_factory=list)
    pegged_in: int = 0
    burned: int = 0
    federation_coins: int | None = None
    seconds: float = 0.0

    @property
    def owed(self) -> int:
        return self.pegged_in - self.burned

    @property
    def ok(self) -> bool:
        return not self.failures

    def rules(self) -> list[str]:
        return [f.rule for f in self.failures]

    def fail(self, height: int, error: Exception) -> None:
        self.failures.append(Failure(height, type(error).__name__, str(error)))

    def summary(self) -> str:
        rate = self.blocks_checked / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"audited heights 0..{self.tip_height}: {self.blocks_checked} blocks, "
            f"{self.signatures_checked} signatures, replayed to {self.replayed_to} "
            f"({rate:.0f} headers/s)",
            f"pegged in {self.pegged_in} sat, burned by peg-outs {self.burned} sat, owed {self.owed} sat",
        ]
        if self.federation_coins is not None:
            lines.append(f"federation coins on the mainchain {self.federation_coins} sat")
        if self.ok:
            lines.append("OK: every check holds")
        else:
            lines.append(f"FAILED: {len(self.failures)} failure(s)")
            lines.extend(f"  {f}" for f in self.failures)
        return "\n".join(lines)


def audit_chain(
    fetch: ChainFetcher,
    federation: Federation,
    mainchain: Mainchain | None = None,
    *,
    start: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Check every block from genesis to the tip ``fetch`` reports.

    Blocks below ``start`` are still replayed (the state needs them) but
    their signatures are not checked."""
    from .node import make_chain  # the member's own chain wiring, peg rules included

    started = time.monotonic()
    report = AuditReport()
    fed = federation.federation_params()
    chain, pegin = make_chain(federation, None)
    if pegin is not None:
        pegin.trusting = True
    genesis = genesis_block(federation.chain_params())
    claim_scripts: set[bytes] = set()
    tip = fetch.tip_height()
    report.tip_height = tip
    replaying = True
    prev_hash = b""
    for height in range(tip + 1):
        named = fetch.block_hash(height)
        try:
            header = BlockHeader.parse(fetch.header(named))
            block = Block.parse(fetch.block(named))
        except ConsensusError as e:
            report.fail(height, e)
            replaying = False
            prev_hash = named
            continue
        report.blocks_checked += 1
        broken = False
        if header.hash != named or block.hash != named or block.header != header:
            report.fail(height, HashMismatch(f"served {block.hash[::-1].hex()}, named {named[::-1].hex()}"))
            broken = True
        if height == 0:
            if block.hash != genesis.hash or block.serialize() != genesis.serialize():
                report.fail(0, WrongGenesis(f"genesis {block.hash[::-1].hex()}, expected {genesis.hash_hex}"))
                replaying = False
            prev_hash = block.hash
            continue
        if block.header.height != height:
            report.fail(height, BadHeight(f"header says height {block.header.height}"))
            broken = True
        if block.header.prev_hash != prev_hash:
            report.fail(height, BadPrevHash("previous hash is not the block below's hash"))
            broken = True
        prev_hash = block.hash
        if height >= start:
            try:
                report.signatures_checked += len(solution_signers(fed, block.header))
            except ConsensusError as e:
                report.fail(height, e)
                broken = True
        if block.compute_merkle_root() != block.header.merkle_root:
            report.fail(height, BadMerkleRoot("merkle root does not match the transactions"))
            broken = True
        if replaying and not broken:
            try:
                # The proof was checked above; "now" is the block's own time,
                # since a past block cannot be too far in the future.
                chain.connect_block(block, block.header.time, check_proof=False)
            except ConsensusError as e:
                report.fail(height, e)
                replaying = False
            else:
                report.replayed_to = height
                _count_peg(block, report, claim_scripts)
        else:
            replaying = False
        if progress is not None:
            progress(height, tip)
    if mainchain is not None and federation.peg is not None:
        peg = federation.peg.params
        scripts = [peg.fedpeg_program, *(peg.pegin_script_pubkey(c) for c in sorted(claim_scripts))]
        report.federation_coins = federation_coins(mainchain, scripts)
        if report.federation_coins < report.owed:
            report.fail(
                tip,
                ReserveShortfall(
                    f"federation holds {report.federation_coins} sat on the mainchain, owes {report.owed} sat"
                ),
            )
    report.seconds = time.monotonic() - started
    return report


def _count_peg(block: Block, report: AuditReport, claim_scripts: set[bytes]) -> None:
    for tx in block.transactions:
        for i, txin in enumerate(tx.inputs):
            if txin.is_pegin:
                claim = PegInWitness.parse(tx.input_witnesses[i].pegin_witness)
                report.pegged_in += claim.value
                claim_scripts.add(claim.claim_script)
        for out in tx.outputs:
            if out.is_explicit and classify_output(out) is OutputKind.PEGOUT:
                report.burned += out.value.amount


def federation_coins(mainchain: Mainchain, scripts: Iterable[bytes]) -> int:
    """Satoshis in the mainchain UTXO set paying any of ``scripts``."""
    descriptors = [f"raw({s.hex()})" for s in dict.fromkeys(scripts)]
    result = mainchain.call("scantxoutset", "start", descriptors, timeout=300.0)
    return sum(sats(u["amount"]) for u in result["unspents"])


class HttpFetcher:
    """A member's Esplora-style read API."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def _get(self, path: str) -> httpx.Response:
        try:
            r = self.client.get(self.url + path)
        except httpx.HTTPError as e:
            raise FetchError(f"{self.url}{path}: {e}") from None
        if r.status_code != 200:
            raise FetchError(f"{self.url}{path}: HTTP {r.status_code}")
        return r

    def _text(self, path: str) -> str:
        return self._get(path).text.strip()

    def tip_height(self) -> int:
        text = self._text("/blocks/tip/height")
        if not text.isdigit():
            raise FetchError(f"tip height is not a number: {text[:40]!r}")
        return int(text)

    def block_hash(self, height: int) -> bytes:
        return self._hex(f"/block-height/{height}", 32)[::-1]

    def header(self, block_hash: bytes) -> bytes:
        return self._hex(f"/block/{block_hash[::-1].hex()}/header")

    def block(self, block_hash: bytes) -> bytes:
        return self._get(f"/block/{block_hash[::-1].hex()}/raw").content

    def _hex(self, path: str, size: int | None = None) -> bytes:
        text = self._text(path)
        try:
            data = bytes.fromhex(text)
        except ValueError:
            raise FetchError(f"{path}: not hex") from None
        if size is not None and len(data) != size:
            raise FetchError(f"{path}: expected {size} bytes")
        return data


class ProgressBar:
    """A one-line text bar on stderr."""

    def __init__(self, width: int = 40) -> None:
        self.width = width
        self.last = -1.0

    def __call__(self, height: int, tip: int) -> None:
        now = time.monotonic()
        if height < tip and now - self.last < 0.1:
            return
        self.last = now
        frac = (height + 1) / (tip + 1)
        done = int(frac * self.width)
        sys.stderr.write(f"\r[{'#' * done}{'.' * (self.width - done)}] {height}/{tip}")
        if height >= tip:
            sys.stderr.write("\n")
        sys.stderr.flush()


def add_parser(sub: Any) -> None:
    a = sub.add_parser("audit", help="check a member's chain and the peg's reserves, trusting nothing")
    a.add_argument("--url", required=True, help="a member's API, e.g. http://127.0.0.1:8000")
    a.add_argument("--federation", required=True, help="the public federation.json")
    a.add_argument("--mainchain-rpc", default=None, help="bitcoind JSON-RPC URL (credentials in the URL)")
    a.add_argument("--from", dest="start", type=int, default=0, help="check signatures from this height")
    a.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """The subcommand: 0 all holds, 1 failures (listed), 2 bad arguments or API unreachable."""
    from .bitcoind import BitcoinRpc

    try:
        federation = Federation.load(Path(args.federation))
    except ConfigError as e:
        print(f"functionary audit: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.start < 0:
        print("functionary audit: --from must be a height >= 0", file=sys.stderr)
        return EXIT_USAGE
    fetch = HttpFetcher(args.url)
    mainchain = BitcoinRpc(args.mainchain_rpc, timeout=300.0) if args.mainchain_rpc else None
    bar = None if args.quiet or not sys.stderr.isatty() else ProgressBar()
    try:
        report = audit_chain(fetch, federation, mainchain, start=args.start, progress=bar)
    except FetchError as e:
        print(f"functionary audit: API unreachable: {e}", file=sys.stderr)
        return EXIT_USAGE
    except MainchainError as e:
        print(f"functionary audit: mainchain RPC: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        fetch.close()
        if mainchain is not None:
            mainchain.close()
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED
