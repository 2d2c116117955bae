"""The member's view of the mainchain, from its own bitcoind, for peg-in checks.

Consensus validation is synchronous and pure: it asks a ``MainchainView``
"at what height is this block in the best chain?" and "what is the tip
height?". Answering needs RPC, which is asynchronous; so the runtime calls
:meth:`BitcoindView.prefetch` with the block hashes named by the peg-in
proofs of a transaction or block *before* handing it to validation, and
:meth:`refresh` on a timer for the tip. Hashes are in internal byte order
(bitcoind's RPC shows them reversed).

A block hash the view has not fetched answers "not in the best chain": a
peg-in is never accepted on a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from consensus.errors import BadPegInWitness, ParseError
from consensus.mainchain import MerkleBlock
from consensus.peg import PegInRules
from consensus.transaction import Transaction, TxOut

from .bitcoind import AsyncBitcoinRpc, MainchainError, RpcInvalidAddressOrKey
from .log import event

PEGIN_PROOF_INDEX = 5


def pegin_proof_blocks(txs: Iterable[Transaction]) -> set[bytes]:
    """Mainchain block hashes named by the peg-in proofs in ``txs``."""
    hashes: set[bytes] = set()
    for tx in txs:
        for i, txin in enumerate(tx.inputs):
            if not txin.is_pegin:
                continue
            stack = tx.input_witnesses[i].pegin_witness if i < len(tx.input_witnesses) else ()
            if len(stack) > PEGIN_PROOF_INDEX:
                try:
                    hashes.add(MerkleBlock.parse(stack[PEGIN_PROOF_INDEX]).header.hash)
                except ParseError:
                    continue  # validation will name the broken proof
    return hashes


class BitcoindView:
    """Heights and transaction counts of best-chain blocks, cached."""

    def __init__(self, rpc: AsyncBitcoinRpc, logger: logging.Logger) -> None:
        self.rpc = rpc
        self.log = logger
        self._tip = -1
        self._heights: dict[bytes, int] = {}
        self._tx_counts: dict[bytes, int] = {}
        self.reachable = False

    # -- the consensus-facing protocol (synchronous) -------------------------------------

    def block_height(self, block_hash: bytes) -> int | None:
        return self._heights.get(block_hash)

    def tip_height(self) -> int:
        return self._tip

    def block_tx_count(self, block_hash: bytes) -> int | None:
        return self._tx_counts.get(block_hash)

    # -- I/O ------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """The tip height, and re-check cached blocks after a reorganisation."""
        try:
            info = await self.rpc.call("getblockchaininfo")
        except MainchainError as e:
            if self.reachable:
                event(self.log, "mainchain_unreachable", logging.WARNING, reason=e.code, detail=str(e))
            self.reachable = False
            return
        self.reachable = True
        tip = int(info["blocks"])
        if tip < self._tip:
            # The best chain got shorter: cached heights may be stale.
            self._heights.clear()
        self._tip = tip

    async def prefetch(self, hashes: Iterable[bytes]) -> None:
        """Fetch the best-chain height of each block not cached yet."""
        for bh in hashes:
            if bh in self._heights:
                continue
            try:
                header = await self.rpc.call("getblockheader", bh[::-1].hex(), True)
            except RpcInvalidAddressOrKey:
                continue  # bitcoind does not know the block
            except MainchainError as e:
                event(self.log, "mainchain_unreachable", logging.WARNING, reason=e.code, detail=str(e))
                return
            # confirmations is -1 for a block off the best chain.
            if int(header.get("confirmations", -1)) >= 1:
                self._heights[bh] = int(header["height"])
                if "nTx" in header:
                    self._tx_counts[bh] = int(header["nTx"])


class MemberPegInVerifier:
    """The chain state's peg-in verifier inside a member.

    Proposals and mempool transactions get every rule, depth included,
    against this member's own bitcoind. Blocks that are already final (m
    signatures: replayed at start-up, or fetched while catching up) get every
    rule that the bytes alone decide, but not the depth: the members who
    signed them checked it against their bitcoinds, and refusing a final
    block would only stop this member, not the chain. ``trusting`` switches.
    """

    def __init__(self, rules: PegInRules) -> None:
        self.rules = rules
        self.trusting = False

    def verify_pegin(self, tx: Transaction, index: int, height: int) -> TxOut:
        if not self.trusting:
            return self.rules.verify_pegin(tx, index, height)
        txin = tx.inputs[index]
        if not txin.is_pegin:
            raise BadPegInWitness(f"input {index} is not a peg-in")
        claim = self.rules.check_claim(txin.prevout, tx.input_witnesses[index].pegin_witness)
        return claim.output(self.rules.peg.policy_asset)
