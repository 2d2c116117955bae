"""The emergency path: keeping federation coins out of the emergency keys'
reach, and the emergency keys' own spend for the day the watchmen are gone.

The fedpegscript's OP_ELSE branch lets k of the e emergency keys spend any
federation coin that is ``csv_delay`` blocks deep (BIP68/112). Live funds
must never get there: a coin is *due* once its age reaches
``csv_delay − margin`` and is then moved to a fresh federation output by the
next payout (a sweep when no peg-out is waiting). Ages, for a coin confirmed
in the block at height h, with the mainchain tip at height t::

    confirmations      t − h + 1
    due                confirmations >= csv_delay − margin
    emergency-final    the block at h + csv_delay may include an emergency
                       spend (BIP68: a coin's age in that block is csv_delay);
                       a mempool accepts one once t >= h + csv_delay − 1

Sweeping is a payout with no peg-out outputs: the same check_payout, the
same signatures, the same signer rule. Coins the payout builder spends
first are the oldest, so an active peg keeps its coins young without sweeps.

The emergency spend (:func:`emergency_spend`), version 2, each input's
nSequence = csv_delay (a block-based relative lock), witness::

    [empty, emergency sig_1 .. sig_k (in emergency-key order), witnessScript]

The emergency keys are untweaked in every peg-in contract (Elements leaves
the keys after OP_ELSE alone), so the same keys sign every coin.
"""

from __future__ import annotations

from collections.abc import Sequence

from coincurve import PrivateKey

from consensus.mainchain import BtcTransaction, BtcTxIn, BtcTxOut
from consensus.peg import PegParams

from .ledger import FedUtxo, Ledger
from .params import WatchmenParams
from .txmath import SIGHASH_ALL, Bip143Cache, bip143_sighash


def sweep_needed(
    ledger: Ledger, mainchain_height: int, params: WatchmenParams, margin: int | None = None
) -> list[FedUtxo]:
    """Federation coins whose age has reached ``csv_delay − margin`` (default
    margin: ``params.effective_sweep_margin``), oldest first. Empty when the
    fedpegscript has no emergency branch."""
    peg = params.peg
    if not peg.emergency_keys:
        return []
    m = params.effective_sweep_margin if margin is None else margin
    threshold = peg.csv_delay - m
    return [u for u in ledger.utxos() if u.confirmations(mainchain_height) >= threshold]


def emergency_final_height(utxo: FedUtxo, peg: PegParams) -> int:
    """The first block height that may include an emergency spend of ``utxo``."""
    return utxo.height + peg.csv_delay


def build_sweep(ledger: Ledger, params: WatchmenParams, coins: Sequence[FedUtxo], rate: int) -> BtcTransaction | None:
    """A payout that moves ``coins`` (and nothing else) to one fresh change
    output; None if their value cannot cover the fee and min_change."""
    from .payout import build_payout

    return build_payout(ledger, params, rate, pegouts=[], forced_inputs=coins)


def emergency_spend(
    coins: Sequence[FedUtxo],
    peg: PegParams,
    keys: Sequence[PrivateKey],
    outputs: Sequence[BtcTxOut],
    *,
    sequence: int | None = None,
) -> BtcTransaction:
    """The emergency keys' spend of ``coins`` to ``outputs``. ``keys`` are k
    emergency private keys (any k of them; ordered here by the script's key
    order). ``sequence`` defaults to csv_delay; a lower one fails the script."""
    if not peg.emergency_keys:
        raise ValueError("this fedpegscript has no emergency branch")
    order = {pub: i for i, pub in enumerate(peg.emergency_keys)}
    picked = sorted(keys, key=lambda k: order.get(k.public_key.format(), -1))
    if any(k.public_key.format() not in order for k in picked):
        raise ValueError("a key that is not an emergency key")
    if len({k.public_key.format() for k in picked}) != peg.emergency_threshold or len(picked) != len(set(picked)):
        raise ValueError(f"need exactly {peg.emergency_threshold} distinct emergency keys")
    seq = peg.csv_delay if sequence is None else sequence
    ins = tuple(BtcTxIn(u.outpoint.txid, u.outpoint.vout, b"", seq) for u in coins)
    unsigned = BtcTransaction(2, ins, tuple(outputs), 0)
    cache = Bip143Cache(unsigned)
    witnesses = []
    for i, u in enumerate(coins):
        script = u.witness_script(peg)
        digest = bip143_sighash(unsigned, i, script, u.value, cache)
        sigs = [k.sign(digest, hasher=None) + bytes((SIGHASH_ALL,)) for k in picked]
        witnesses.append((b"", *sigs, script))
    return BtcTransaction(2, ins, tuple(outputs), 0, tuple(witnesses))


__all__ = ["build_sweep", "emergency_final_height", "emergency_spend", "sweep_needed"]
