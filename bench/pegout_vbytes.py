"""The mainchain cost of paying peg-outs: virtual bytes per peg-out, batched
and not.

Federation: Liquid's shape, an 11-of-15 watchmen fedpegscript with a 2-of-3
emergency branch after 4032 blocks (a 628-byte witnessScript). Every
transaction is built by functionary.watchmen's payout builder from a ledger,
signed by 11 watchmen with their tweaked keys, combined, and checked by the
regtest script interpreter (Core's standard flags) before it is measured;
sizes are of the signed bytes, so each DER signature's real length counts.

    case                      inputs  outputs
    batch of N (1, 10, 100)   1       N peg-outs + change
    unbatched                 1       1 peg-out + change, once per peg-out
                                      (averaged over UNBATCHED peg-outs)

Peg-out destinations cycle through P2PKH, P2SH-P2WPKH and P2WPKH; each input
is a claimed peg-in coin (fedpegscript tweaked by its claim script).

Figures (JSON lines through bench/_report.emit):

    vbytes_per_pegout_batch_1      vsize / 1
    vbytes_per_pegout_batch_10     vsize / 10
    vbytes_per_pegout_batch_100    vsize / 100
    vbytes_per_pegout_unbatched    Σ vsize / number of peg-outs
    unbatched_over_batch_100       the ratio of the two
    input_vbytes                   one 11-of-15 watchmen input: 41 + witness / 4
    witness_script_bytes           the fedpegscript a peg-in coin is locked to

    python -m bench.pegout_vbytes          (or: bench/run pegout_vbytes)
"""

from __future__ import annotations

from coincurve import PrivateKey

from bench._report import emit
from consensus.hashes import hash160, sha256
from consensus.mainchain import REGTEST, BtcTransaction
from consensus.peg import LIQUID_CSV_DELAY, PegParams
from consensus.transaction import OutPoint
from functionary.watchmen.ledger import BlockPegEvents, Ledger, PegInClaimed, PegOutRequested
from functionary.watchmen.params import WatchmenParams
from functionary.watchmen.payout import build_payout, check_payout
from functionary.watchmen.signing import coins_of, combine, sign_inputs
from functionary.watchmen.txmath import MainOutPoint, stack_size, vsize
from regtest.primitives import Transaction as RtTransaction
from regtest.script import STANDARD_FLAGS, TxChecker, verify_script

BENCH = "pegout_vbytes"
N_WATCHMEN, M = 15, 11
N_EMERGENCY, K = 3, 2
BATCHES = (1, 10, 100)
UNBATCHED = 30
RATE = 10_000  # sat/kvB; it sets the fee, not the size
WATCHMEN = [PrivateKey(sha256(b"watchman" + bytes([i]))) for i in range(N_WATCHMEN)]
EMERGENCY = [PrivateKey(sha256(b"emergency" + bytes([i]))) for i in range(N_EMERGENCY)]
PEG = PegParams(
    watchman_keys=tuple(k.public_key.format() for k in WATCHMEN),
    peg_threshold=M,
    emergency_keys=tuple(k.public_key.format() for k in EMERGENCY),
    emergency_threshold=K,
    csv_delay=LIQUID_CSV_DELAY,
    pegin_min_depth=1,
    parent=REGTEST,
    enforce_pak=False,
)
PARAMS = WatchmenParams(PEG, max_feerate=1_000, max_pegouts=1_000)


def destination(i: int) -> bytes:
    h = hash160(sha256(b"receiver" + i.to_bytes(4, "little")))
    kind = i % 3
    if kind == 0:
        return b"\x76\xa9\x14" + h + b"\x88\xac"  # P2PKH
    if kind == 1:
        return b"\xa9\x14" + hash160(b"\x00\x14" + h) + b"\x87"  # P2SH-P2WPKH
    return b"\x00\x14" + h  # P2WPKH


def signed_payout(n_pegouts: int, first: int = 0) -> BtcTransaction:
    """One coin in, ``n_pegouts`` peg-outs and change out, signed by 11 watchmen."""
    ledger = Ledger(PARAMS)
    claim = b"\x00\x14" + hash160(first.to_bytes(4, "little"))
    coin = PegInClaimed(MainOutPoint(sha256(b"coin" + first.to_bytes(4, "little")), 0), 10**10, claim, b"\x01" * 32)
    ledger.apply_block(1, BlockPegEvents(pegins=(coin,)), {b"\x01" * 32: 1})
    pegouts = tuple(
        PegOutRequested(OutPoint(sha256(b"pegout" + i.to_bytes(4, "little")), 0), 1_000_000 + i, destination(i))
        for i in range(first, first + n_pegouts)
    )
    ledger.apply_block(2, BlockPegEvents(pegouts=pegouts), {})
    tx = build_payout(ledger, PARAMS, RATE)
    assert tx is not None
    check = check_payout(ledger, tx, PARAMS)
    assert len(check.pegouts) == n_pegouts and len(check.inputs) == 1 and check.change is not None
    coins = coins_of(ledger, tx)
    signed = combine(tx, coins, PEG, {i: sign_inputs(WATCHMEN[i], tx, coins, PEG) for i in range(M)})
    rt = RtTransaction.from_bytes(signed.serialize())
    for i, c in enumerate(coins):
        verify_script(b"", c.script_pubkey(PEG), rt.vin[i].witness, STANDARD_FLAGS, TxChecker(rt, i, c.value))
    assert rt.vsize == vsize(signed)
    return signed


def main() -> None:
    note = f"{M}-of-{N_WATCHMEN} watchmen, {K}-of-{N_EMERGENCY} emergency after {LIQUID_CSV_DELAY} blocks"
    batched: dict[int, float] = {}
    for n in BATCHES:
        tx = signed_payout(n)
        batched[n] = vsize(tx) / n
        emit(BENCH, f"vbytes_per_pegout_batch_{n}", batched[n], "vB", tx_vsize=vsize(tx), fedpeg=note)
    sizes = [vsize(signed_payout(1, first=1_000 + i)) for i in range(UNBATCHED)]
    unbatched = sum(sizes) / len(sizes)
    emit(BENCH, "vbytes_per_pegout_unbatched", unbatched, "vB", transactions=len(sizes), fedpeg=note)
    emit(BENCH, "unbatched_over_batch_100", unbatched / batched[100], "ratio")
    one = signed_payout(1)
    # outpoint (36) + empty scriptSig (1) + sequence (4), and the witness at a quarter.
    input_vb = 41 + stack_size(one.witnesses[0]) / 4
    emit(BENCH, "input_vbytes", input_vb, "vB", witness_items=len(one.witnesses[0]))
    emit(BENCH, "witness_script_bytes", len(PEG.pegin_contract(b"\x00\x14" + bytes(20))), "B")


if __name__ == "__main__":
    main()
