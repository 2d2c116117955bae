"""Confidential transactions on the chain: consensus.ct inside ChainState.

Every chain here starts from a genesis that gives Alice 50 coins in the
clear; block 1 turns them into confidential coins (blinded by the package,
``confidential.blind_outputs``), and the tests spend those. Fixed keys, a
2-of-3 federation signing every block, and seeded randomness (the seed is
in each failure message).

Two ways of building outputs:

* ``build``: the package's sender side, as a wallet would;
* ``craft``: by hand, scalar by scalar, for what no honest wallet makes:
  Elements' mixed outputs (explicit asset with a committed value and the
  reverse), values that are negative or past 2^64, zero-value outputs, and
  proofs that belong elsewhere. Its arithmetic is anchored to the library
  (``test_crafted_commitments_match_the_library``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
import wallycore as wally
from coincurve import PrivateKey, PublicKey

import confidential as ct
from consensus import errors
from consensus.block import Block
from consensus.chainstate import COIN, BlockUndo, ChainState
from consensus.ct import ConfidentialTxVerifier, ProofCheck, run_check, verify_checks
from consensus.header import sign_block_hash
from consensus.params import ChainParams, FederationParams
from consensus.script import push_data
from consensus.standard import p2wpkh_script, p2wpkh_script_code, sign_segwit_v0
from consensus.transaction import (
    ConfidentialAsset,
    ConfidentialNonce,
    ConfidentialValue,
    OutPoint,
    Transaction,
    TxIn,
    TxInWitness,
    TxOut,
    TxOutWitness,
)

SIGNERS = [PrivateKey(bytes([0x01 + i]) * 32) for i in range(3)]
FED = FederationParams(tuple(k.public_key.format() for k in SIGNERS), 2)
ASSET = b"\x6d" * 32
T0 = 1_700_000_000
FREE = 50 * COIN
FEE = 1_000
ALICE = PrivateKey(b"\x0a" * 32)
BOB = PrivateKey(b"\x0b" * 32)
CAROL = PrivateKey(b"\x0c" * 32)
BOB_BLIND = b"\xb0" * 32
WALLET = [PrivateKey(bytes([0x40 + i]) * 32) for i in range(16)]
BLIND = [bytes([0x60 + i]) * 32 for i in range(16)]
N = ct.points.CURVE_ORDER
H = ct.explicit_generator(ASSET)
WALLY_FLAGS = wally.WALLY_TX_FLAG_USE_WITNESS | wally.WALLY_TX_FLAG_USE_ELEMENTS


def pub(key: PrivateKey) -> bytes:
    return key.public_key.format()


def spk(key: PrivateKey) -> bytes:
    return p2wpkh_script(pub(key))


@dataclass(frozen=True)
class Coin:
    """A spendable output and what its owner knows about it. ``pegin_stack``
    makes it a peg-in claim of a mainchain output rather than a UTXO."""

    outpoint: OutPoint
    output: TxOut
    opening: ct.InputOpening
    key: PrivateKey
    pegin_stack: tuple[bytes, ...] | None = None


def to_wire(out: ct.Output) -> tuple[TxOut, TxOutWitness]:
    if isinstance(out, ct.BlindedOutput):
        txout = TxOut(
            ConfidentialAsset(out.asset_generator),
            ConfidentialValue(out.value_commitment),
            ConfidentialNonce(out.nonce_commitment),
            out.script_pubkey,
        )
        return txout, TxOutWitness(out.surjection_proof, out.range_proof)
    return TxOut.explicit(out.asset_id, out.value, out.script_pubkey), TxOutWitness()


def sign(coins: Sequence[Coin], outputs: Sequence[TxOut], witnesses: Sequence[TxOutWitness]) -> Transaction:
    """A transaction spending ``coins`` in order, each input signed (SIGHASH_ALL)
    over the spent output's serialized value, explicit or committed."""
    ins = tuple(TxIn(c.outpoint, b"", 0xFFFFFFFF, None, c.pegin_stack is not None) for c in coins)
    tx = Transaction(2, ins, tuple(outputs), 0, (), tuple(witnesses))
    wits = []
    for i, c in enumerate(coins):
        code = p2wpkh_script_code(c.output.script_pubkey[2:])
        sig = sign_segwit_v0(c.key, tx, i, code, c.output.value)
        wits.append(TxInWitness(script_witness=(sig, pub(c.key)), pegin_witness=c.pegin_stack or ()))
    return tx.with_witnesses(tuple(wits))


def resign(
    coins: Sequence[Coin],
    tx: Transaction,
    outputs: Sequence[TxOut] | None = None,
    witnesses: Sequence[TxOutWitness] | None = None,
) -> Transaction:
    """``tx`` with other outputs or output witnesses, signed again, so that the
    only fault left in it is the one a test put there."""
    return sign(
        coins,
        tx.outputs if outputs is None else outputs,
        tx.output_witnesses if witnesses is None else witnesses,
    )


def build(coins: Sequence[Coin], specs: Sequence[ct.OutputSpec], seed: int) -> tuple[Transaction, list[ct.Output]]:
    """Blind with the package, as a wallet would, and sign."""
    outs = ct.blind_outputs([c.opening for c in coins], specs, rng=random.Random(seed).randbytes)
    wire = [to_wire(o) for o in outs]
    return sign(coins, [w[0] for w in wire], [w[1] for w in wire]), outs


def coin_of(tx: Transaction, outs: Sequence[ct.Output], index: int, key: PrivateKey) -> Coin:
    return Coin(OutPoint(tx.txid, index), tx.outputs[index], outs[index].opening(), key)


class World:
    """A chain whose block 1 turned Alice's genesis coins into ``n_coins``
    confidential coins, WALLET[k] owning coin k (blinded to BLIND[k]).

    Deterministic: two worlds built alike have the same blocks."""

    def __init__(self, n_coins: int = 4, verifier: ConfidentialTxVerifier | None = None, **hooks: object) -> None:
        self.params = ChainParams(
            FED,
            policy_asset=ASSET,
            initial_free_coins=FREE,
            initial_free_coins_script=spk(ALICE),
            coinbase_maturity=3,
            genesis_time=T0,
        )
        if verifier is not None:
            hooks["confidential_verifier"] = verifier
        self.chain = ChainState(self.params, **hooks)  # type: ignore[arg-type]
        self.time = T0
        genesis = self.chain.genesis.transactions[0]
        alice = Coin(OutPoint(genesis.txid, 0), genesis.outputs[0], ct.InputOpening.explicit(ASSET, FREE), ALICE)
        each = (FREE - FEE) // n_coins
        values = [each] * (n_coins - 1) + [FREE - FEE - each * (n_coins - 1)]
        specs = [ct.OutputSpec(v, ASSET, spk(WALLET[k]), ct.public_key(BLIND[k])) for k, v in enumerate(values)]
        tx, outs = build([alice], [*specs, ct.OutputSpec(FEE, ASSET, b"")], seed=1)
        self.block1, self.undo1 = self.mine([tx])
        self.coins = [coin_of(tx, outs, k, WALLET[k]) for k in range(n_coins)]

    def block(self, txs: Sequence[Transaction]) -> Block:
        candidate = self.chain.assemble_block(list(txs), self.time + 60)
        sigs = [sign_block_hash(SIGNERS[i], candidate.hash) for i in (0, 1)]
        return candidate.with_solution(b"\x00" + b"".join(push_data(s) for s in sigs))

    def mine(self, txs: Sequence[Transaction]) -> tuple[Block, BlockUndo]:
        block = self.block(txs)
        self.time = block.header.time
        # Through the wire format, as a peer would deliver it.
        return block, self.chain.connect_block(Block.parse(block.serialize()), self.time)

    def snapshot(self) -> tuple[object, ...]:
        return (dict(self.chain.utxos), self.chain.tip_hash, self.chain.tip_height)


def payment(
    world: World, first: int = 0, seed: int = 2, amount: int = 20 * COIN, fee: int = 2 * FEE
) -> tuple[Transaction, list[Coin]]:
    """The 2-input 2-output confidential payment: coins ``first`` and ``first + 1``
    to Bob and change, the fee explicit."""
    coins = world.coins[first : first + 2]
    total = sum(c.opening.value for c in coins)
    specs = [
        ct.OutputSpec(amount, ASSET, spk(BOB), ct.public_key(BOB_BLIND)),
        ct.OutputSpec(total - amount - fee, ASSET, spk(WALLET[15]), ct.public_key(BLIND[15])),
        ct.OutputSpec(fee, ASSET, b""),
    ]
    tx, _ = build(coins, specs, seed)
    return tx, coins


def swap_range_proofs(coins: Sequence[Coin], tx: Transaction) -> Transaction:
    w = list(tx.output_witnesses)
    w[0], w[1] = replace(w[0], range_proof=w[1].range_proof), replace(w[1], range_proof=w[0].range_proof)
    return resign(coins, tx, witnesses=w)


# --- Crafting outputs by hand ---------------------------------------------------------


def scalar(k: int) -> bytes:
    return (k % N).to_bytes(32, "big")


def commit_any(value: int, vbf: int, generator: bytes) -> bytes:
    """value*generator + vbf*G for any integer value, negative or past 2^64, by point arithmetic."""
    terms = []
    if value % N:
        terms.append(ct.generator_to_pubkey(generator).multiply(scalar(value)))
    if vbf % N:
        terms.append(PrivateKey(scalar(vbf)).public_key)
    return ct.pubkey_to_commitment(terms[0] if len(terms) == 1 else PublicKey.combine_keys(terms))


@dataclass(frozen=True)
class Spec:
    """One crafted output. ``proof_value``: prove this value instead, with the
    same blinding, which gives a genuine proof of another commitment.
    ``min_value``: the proof's minimum (default 1, 0 for an unspendable script).
    ``same_abf_as``: reuse an earlier output's asset blinding factor."""

    value: int
    script: bytes
    blind_asset: bool = True
    blind_value: bool = True
    proof_value: int | None = None
    min_value: int | None = None
    same_abf_as: int | None = None


@dataclass(frozen=True)
class Crafted:
    tx: Transaction
    abfs: list[int]
    vbfs: list[int]
    generators: list[bytes]


def craft(
    coins: Sequence[Coin], specs: Sequence[Spec], fee: int, seed: int, proof_coins: Sequence[Coin] | None = None
) -> Crafted:
    """Outputs made scalar by scalar, then the explicit fee. The last committed
    value's vbf is solved so that the G terms balance; the H terms balance only
    if the values add up. Surjection proofs are over ``proof_coins`` (default:
    the coins spent)."""
    rnd = random.Random(seed)
    abfs: list[int] = []
    for s in specs:
        if s.same_abf_as is not None:
            abfs.append(abfs[s.same_abf_as])
        else:
            abfs.append(rnd.randrange(1, N) if s.blind_asset else 0)
    gens = [ct.asset_generator(ASSET, scalar(a)) for a in abfs]
    vbfs = [rnd.randrange(1, N) if s.blind_value else 0 for s in specs]
    # sum over inputs of (v*abf + vbf) == the same over outputs; the explicit fee has neither.
    lhs = sum(c.opening.value * int.from_bytes(c.opening.abf) + int.from_bytes(c.opening.vbf) for c in coins)
    last = [k for k, s in enumerate(specs) if s.blind_value][-1]
    others = sum(s.value * abfs[k] + vbfs[k] for k, s in enumerate(specs) if k != last)
    vbfs[last] = (lhs - others - specs[last].value * abfs[last]) % N

    ring = coins if proof_coins is None else proof_coins
    ring_ids, ring_abfs = [c.opening.asset_id for c in ring], [c.opening.abf for c in ring]
    ring_gens = [c.opening.generator for c in ring]
    outputs, witnesses = [], []
    for k, s in enumerate(specs):
        surjection = b""
        if s.blind_asset:
            asset = ConfidentialAsset(gens[k])
            seed32 = rnd.randbytes(32)
            surjection = ct.make_surjection_proof(
                ASSET, scalar(abfs[k]), gens[k], ring_ids, ring_abfs, ring_gens, seed32
            )
        else:
            asset = ConfidentialAsset.explicit(ASSET)
        if s.blind_value:
            proved = s.value if s.proof_value is None else s.proof_value
            low = s.min_value if s.min_value is not None else (0 if s.script[:1] == b"\x6a" else 1)
            range_proof = ct.make_range_proof(
                proved,
                rnd.randbytes(32),
                ASSET,
                scalar(abfs[k]),
                scalar(vbfs[k]),
                commit_any(proved, vbfs[k], gens[k]),
                gens[k],
                s.script,
                min_value=low,
            )
            value = ConfidentialValue(commit_any(s.value, vbfs[k], gens[k]))
            nonce = ConfidentialNonce(ct.public_key(rnd.randbytes(32)))
        else:
            range_proof = b""
            value = ConfidentialValue.explicit(s.value)
            nonce = ConfidentialNonce(b"\x00")
        outputs.append(TxOut(asset, value, nonce, s.script))
        witnesses.append(TxOutWitness(surjection, range_proof))
    outputs.append(TxOut.explicit(ASSET, fee, b""))
    witnesses.append(TxOutWitness())
    return Crafted(sign(coins, outputs, witnesses), abfs, vbfs, gens)


def test_crafted_commitments_match_the_library() -> None:
    rnd = random.Random(7)
    for _ in range(5):
        v, r, a = rnd.randrange(1, 2**52), rnd.randrange(1, N), rnd.randrange(1, N)
        g = ct.asset_generator(ASSET, scalar(a))
        assert commit_any(v, r, g) == ct.value_commitment(v, scalar(r), g)
    # An explicit amount under a committed asset: a zero blinding factor, as Elements commits it.
    g = ct.asset_generator(ASSET, scalar(5))
    assert commit_any(1234, 0, g) == ct.value_commitment(1234, bytes(32), g)
    # A crafted honest transaction is valid, so its failures below are the faults put in.
    world = World()
    coin = world.coins[0]
    honest = craft([coin], [Spec(COIN, spk(BOB)), Spec(coin.opening.value - COIN - FEE, spk(CAROL))], FEE, seed=1)
    assert world.chain.validate_transaction(honest.tx) == FEE


# --- Confidential payments connect ---------------------------------------------------------


def test_two_in_two_out_confidential_transaction_connects_and_bob_unblinds() -> None:
    world = World()  # the chain's default verifier
    assert all(world.chain.utxo(c.outpoint) is not None for c in world.coins)
    assert all(c.output.value.is_commitment and c.output.asset.is_commitment for c in world.coins)
    assert world.undo1.fees == FEE

    tx, coins = payment(world)
    assert [o.value.is_commitment for o in tx.outputs] == [True, True, False]
    assert tx.outputs[2].is_fee and tx.outputs[2].value.amount == 2 * FEE  # the fee stays explicit
    assert world.chain.validate_transaction(tx) == 2 * FEE
    block, undo = world.mine([tx])
    assert undo.fees == 2 * FEE and world.chain.tip_height == 2
    assert block.transactions[0].outputs[0].value.amount == 2 * FEE  # the coinbase counts it in the clear
    assert all(world.chain.utxo(c.outpoint) is None for c in coins)

    # Bob opens his output, as stored in the UTXO set, with his blinding key.
    entry = world.chain.utxo(OutPoint(tx.txid, 0))
    assert entry is not None and entry.output.value.is_commitment
    out, proof = entry.output, tx.output_witnesses[0].range_proof
    opened = ct.unblind_output(out.value.raw, out.asset.raw, out.nonce.raw, out.script_pubkey, proof, BOB_BLIND)
    assert (opened.value, opened.asset_id) == (20 * COIN, ASSET)
    with pytest.raises(ct.NotOurOutput):
        ct.unblind_output(out.value.raw, out.asset.raw, out.nonce.raw, out.script_pubkey, proof, BLIND[15])
    # wallycore, which we did not write, opens it the same way.
    value, asset, _, _ = wally.asset_unblind(
        out.nonce.raw, BOB_BLIND, proof, out.value.raw, out.script_pubkey, out.asset.raw
    )
    assert (value, bytes(asset)) == (20 * COIN, ASSET)

    # What he learned is enough to spend it, confidentially again.
    mine = Coin(OutPoint(tx.txid, 0), out, ct.InputOpening.blinded(ASSET, opened.value, opened.abf, opened.vbf), BOB)
    specs = [
        ct.OutputSpec(5 * COIN, ASSET, spk(CAROL), ct.public_key(b"\xc0" * 32)),
        ct.OutputSpec(15 * COIN - FEE, ASSET, spk(BOB), ct.public_key(BOB_BLIND)),
        ct.OutputSpec(FEE, ASSET, b""),
    ]
    spend, _ = build([mine], specs, seed=3)
    assert world.mine([spend])[1].fees == FEE
    assert world.chain.utxo(OutPoint(tx.txid, 0)) is None


def test_mixed_explicit_and_confidential_outputs_and_inputs() -> None:
    world = World()
    coin = world.coins[2]
    specs = [
        ct.OutputSpec(3 * COIN, ASSET, spk(CAROL)),  # in the clear
        ct.OutputSpec(4 * COIN, ASSET, spk(BOB), ct.public_key(BOB_BLIND)),
        ct.OutputSpec(coin.opening.value - 7 * COIN - FEE, ASSET, spk(WALLET[14]), ct.public_key(BLIND[14])),
        ct.OutputSpec(FEE, ASSET, b""),
    ]
    tx, outs = build([coin], specs, seed=4)
    assert [o.is_explicit for o in tx.outputs] == [True, False, False, True]
    assert world.chain.validate_transaction(tx) == FEE
    world.mine([tx])
    carol = world.chain.utxo(OutPoint(tx.txid, 0))
    assert carol is not None and carol.output.is_explicit and carol.output.value.amount == 3 * COIN

    # An explicit input and a confidential one, spent together into blinded outputs.
    both = [coin_of(tx, outs, 0, CAROL), world.coins[3]]
    total = sum(c.opening.value for c in both)
    specs = [
        ct.OutputSpec(total - 2 * COIN - FEE, ASSET, spk(BOB), ct.public_key(BOB_BLIND)),
        ct.OutputSpec(2 * COIN, ASSET, spk(CAROL), ct.public_key(b"\xc0" * 32)),
        ct.OutputSpec(FEE, ASSET, b""),
    ]
    tx2, _ = build(both, specs, seed=5)
    assert world.chain.validate_transaction(tx2) == FEE
    assert world.mine([tx2])[1].fees == FEE


def test_the_fee_must_be_explicit() -> None:
    world = World()
    tx, coins = payment(world)
    o = list(tx.outputs)
    # The change output, blinded, turned into a fee by an empty script (a range proof cannot
    # even be made for an empty script with wallycore): a fee output must be explicit.
    blinded_fee = replace(o[1], script_pubkey=b"")
    with pytest.raises(errors.BadFeeOutput):
        world.chain.validate_transaction(resign(coins, tx, outputs=[o[0], blinded_fee, o[2]]))
    # Explicit asset, committed value: still not a fee.
    half = replace(o[1], asset=ConfidentialAsset.explicit(ASSET), script_pubkey=b"")
    with pytest.raises(errors.BadFeeOutput):
        world.chain.validate_transaction(resign(coins, tx, outputs=[o[0], half, o[2]]))
    assert world.chain.validate_transaction(tx) == 2 * FEE


def test_a_confidential_burn_may_be_worth_zero() -> None:
    # Elements: a range proof may allow zero when the script is unspendable.
    world = World()
    coin = world.coins[0]
    specs = [
        ct.OutputSpec(coin.opening.value - FEE, ASSET, spk(BOB), ct.public_key(BOB_BLIND)),
        ct.OutputSpec(0, ASSET, b"\x6a", ct.public_key(BLIND[9])),
        ct.OutputSpec(FEE, ASSET, b""),
    ]
    tx, _ = build([coin], specs, seed=7)
    assert ct.range_proof_info(tx.output_witnesses[1].range_proof).min_value == 0
    assert world.chain.validate_transaction(tx) == FEE


def test_elements_mixed_fields_explicit_asset_or_explicit_value() -> None:
    world = World()
    coin = world.coins[0]
    v = coin.opening.value - FEE
    specs = [
        Spec(2 * COIN, spk(BOB), blind_asset=False),  # explicit asset, committed value: range proof only
        Spec(3 * COIN, spk(CAROL), blind_value=False),  # committed asset, explicit value: surjection only
        Spec(v - 5 * COIN, spk(WALLET[14])),
    ]
    tx = craft([coin], specs, FEE, seed=8).tx
    assert tx.outputs[0].asset.is_explicit and tx.outputs[0].value.is_commitment
    assert tx.outputs[1].asset.is_commitment and tx.outputs[1].value.is_explicit
    assert world.chain.validate_transaction(tx) == FEE

    outs, wits = list(tx.outputs), list(tx.output_witnesses)
    bad: list[tuple[dict[int, TxOut], dict[int, TxOutWitness], type[Exception]]] = [
        # a surjection proof where the asset is explicit
        ({}, {0: replace(wits[0], surjection_proof=wits[1].surjection_proof)}, errors.BadSurjectionProof),
        # a range proof where the value is explicit
        ({}, {1: replace(wits[1], range_proof=wits[0].range_proof)}, errors.BadRangeProof),
        # no surjection proof for a committed asset
        ({}, {1: TxOutWitness()}, errors.BadSurjectionProof),
        # no range proof for a committed value
        ({}, {2: replace(wits[2], range_proof=b"")}, errors.BadRangeProof),
        # an explicit asset other than the policy asset
        ({0: replace(outs[0], asset=ConfidentialAsset.explicit(b"\x99" * 32))}, {}, errors.WrongAsset),
        # a spendable explicit zero under a committed asset
        ({1: replace(outs[1], value=ConfidentialValue.explicit(0))}, {}, errors.ConfidentialValueOutOfRange),
        # one satoshi more in the explicit value under the committed asset
        ({1: replace(outs[1], value=ConfidentialValue.explicit(3 * COIN + 1))}, {}, errors.ConfidentialUnbalanced),
    ]
    for new_outs, new_wits, error in bad:
        o = [new_outs.get(k, x) for k, x in enumerate(outs)]
        w = [new_wits.get(k, x) for k, x in enumerate(wits)]
        with pytest.raises(error):
            world.chain.validate_transaction(resign([coin], tx, o, w))
    world.mine([tx])
    assert world.chain.utxo(OutPoint(tx.txid, 0)) is not None and world.chain.utxo(OutPoint(tx.txid, 1)) is not None


# --- Rejections, each typed ------------------------------------------------------------


@pytest.fixture(scope="module")
def paid() -> tuple[World, Transaction, list[Coin]]:
    """A world where the valid payment has been verified once, so its proofs
    sit in the verifier's cache: every rejection below must hold against a
    cache that has seen the honest context."""
    world = World()
    tx, coins = payment(world)
    assert world.chain.validate_transaction(tx) == 2 * FEE
    return world, tx, coins


def test_proof_moved_to_another_output(paid: tuple[World, Transaction, list[Coin]]) -> None:
    world, tx, coins = paid
    with pytest.raises(errors.BadRangeProof, match="output 0"):
        world.chain.validate_transaction(swap_range_proofs(coins, tx))
    # The same commitment and proof under another scriptPubKey: the proof is bound to the script.
    o = list(tx.outputs)
    with pytest.raises(errors.BadRangeProof, match="output 0"):
        world.chain.validate_transaction(resign(coins, tx, outputs=[replace(o[0], script_pubkey=spk(CAROL)), *o[1:]]))
    # Both of output 0's proofs on output 1 as well.
    w = list(tx.output_witnesses)
    with pytest.raises(errors.BadRangeProof, match="output 1"):
        world.chain.validate_transaction(resign(coins, tx, witnesses=[w[0], w[0], w[2]]))


def _on_curve(x: bytes) -> bool:
    try:
        PublicKey(b"\x02" + x)
    except ValueError:
        return False
    return True


def test_commitment_with_a_flipped_bit(paid: tuple[World, Transaction, list[Coin]]) -> None:
    """An x off the curve is no commitment at all. Another valid point fails the
    tally if it is the value (checked first, as in Elements' VerifyAmounts) and
    the range proof if it is the asset generator; a flipped value commitment
    fails its range proof too, checked here on its own."""
    world, tx, coins = paid
    o, w = list(tx.outputs), tx.output_witnesses
    assets = [c.output.asset for c in coins]
    alone = ConfidentialTxVerifier(ASSET, max_workers=1, cache=False)
    seen: set[type[Exception]] = set()
    for field in ("value", "asset"):
        raw = getattr(o[0], field).raw
        for bit in [0, *range(8, 8 * 33, 29)]:  # the prefix's low bit, then bits of x
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            if field == "value":
                out = replace(o[0], value=ConfidentialValue(bytes(flipped)))
            else:
                out = replace(o[0], asset=ConfidentialAsset(bytes(flipped)))
            if not _on_curve(bytes(flipped[1:])):
                expect: type[Exception] = errors.BadCommitment
            elif field == "value":
                expect = errors.ConfidentialUnbalanced
                assert isinstance(run_check(alone.defer_output(out, w[0], assets)), errors.BadRangeProof)
            else:
                expect = errors.BadRangeProof
            with pytest.raises(expect, match=None if expect is errors.ConfidentialUnbalanced else "output 0"):
                world.chain.validate_transaction(resign(coins, tx, outputs=[out, *o[1:]]))
            seen.add(expect)
    assert seen == {errors.BadRangeProof, errors.BadCommitment, errors.ConfidentialUnbalanced}


def test_surjection_proof_against_the_wrong_inputs(paid: tuple[World, Transaction, list[Coin]]) -> None:
    world, tx, coins = paid
    # The same inputs in the other order: the proof's ring names the wrong generators.
    with pytest.raises(errors.BadSurjectionProof, match="output 0"):
        world.chain.validate_transaction(sign(coins[::-1], tx.outputs, tx.output_witnesses))
    # A genuine proof for output 0's asset generator, made over two other coins.
    rebuilt = ct.blind_outputs(
        [c.opening for c in coins],
        [
            ct.OutputSpec(20 * COIN, ASSET, spk(BOB), ct.public_key(BOB_BLIND)),
            ct.OutputSpec(
                sum(c.opening.value for c in coins) - 20 * COIN - 2 * FEE,
                ASSET,
                spk(WALLET[15]),
                ct.public_key(BLIND[15]),
            ),
            ct.OutputSpec(2 * FEE, ASSET, b""),
        ],
        rng=random.Random(2).randbytes,
    )
    first = rebuilt[0]
    assert isinstance(first, ct.BlindedOutput) and first.asset_generator == tx.outputs[0].asset.raw
    others = world.coins[2:4]
    other_gens = [c.opening.generator for c in others]
    wrong = ct.make_surjection_proof(
        ASSET,
        first.abf,
        first.asset_generator,
        [c.opening.asset_id for c in others],
        [c.opening.abf for c in others],
        other_gens,
        b"\x33" * 32,
    )
    ct.verify_surjection_proof(wrong, first.asset_generator, other_gens)  # valid, for those inputs
    w = list(tx.output_witnesses)
    with pytest.raises(errors.BadSurjectionProof, match="output 0"):
        world.chain.validate_transaction(resign(coins, tx, witnesses=[replace(w[0], surjection_proof=wrong), *w[1:]]))


def test_off_by_one_satoshi(paid: tuple[World, Transaction, list[Coin]]) -> None:
    world, tx, coins = paid
    o = list(tx.outputs)
    for delta in (1, -1):
        fee = TxOut.explicit(ASSET, 2 * FEE + delta, b"")
        with pytest.raises(errors.ConfidentialUnbalanced):
            world.chain.validate_transaction(resign(coins, tx, outputs=[o[0], o[1], fee]))
    # One satoshi more or less inside a commitment, with genuine proofs for it: only the tally can tell.
    coin = world.coins[0]
    v = coin.opening.value - FEE
    for delta in (0, 1, -1):
        t = craft([coin], [Spec(v - COIN, spk(BOB)), Spec(COIN + delta, spk(CAROL))], FEE, seed=9).tx
        if delta == 0:
            assert world.chain.validate_transaction(t) == FEE
            continue
        with pytest.raises(errors.ConfidentialUnbalanced) as info:
            world.chain.validate_transaction(t)
        assert isinstance(info.value, errors.ValuesUnbalanced)


def test_negative_and_over_range_values(paid: tuple[World, Transaction, list[Coin]]) -> None:
    world, _, _ = paid
    coin = world.coins[2]
    v = coin.opening.value - FEE
    k = 7 * COIN
    tally = ConfidentialTxVerifier(ASSET, max_workers=1, cache=False)

    # Output 0 is worth k more than the input; output 1 is worth -k. The tally balances;
    # output 1 can carry only a genuine proof of another commitment (here, of +k).
    neg = craft([coin], [Spec(v + k, spk(BOB)), Spec(-k, spk(CAROL), proof_value=k, same_abf_as=0)], FEE, seed=10)
    tally.verify_balance([coin.output], neg.tx.outputs)
    assert ct.recompute_balance(
        [ct.Committed(coin.output.value.raw, coin.output.asset.raw)],
        [ct.Committed(o.value.raw, o.asset.raw) for o in neg.tx.outputs[:2]] + [ct.Explicit(FEE, ASSET)],
    )
    with pytest.raises(errors.BadRangeProof, match="output 1"):
        world.chain.validate_transaction(neg.tx)

    # A 64-bit counter wrapped: output 0 commits to its value plus 2^64 and carries the
    # genuine proof of its value; output 1 holds the -2^64 that pays for it.
    specs = [
        Spec(v - COIN + 2**64, spk(BOB), proof_value=v - COIN),
        Spec(COIN - 2**64, spk(CAROL), proof_value=COIN, same_abf_as=0),
    ]
    wrap = craft([coin], specs, FEE, seed=11)
    tally.verify_balance([coin.output], wrap.tx.outputs)
    with pytest.raises(errors.BadRangeProof, match="output 0"):
        world.chain.validate_transaction(wrap.tx)

    # An explicit amount past MAX_MONEY beside a confidential output.
    o, w = list(neg.tx.outputs), list(neg.tx.output_witnesses)
    huge = TxOut.explicit(ASSET, ct.MAX_MONEY + 1, spk(CAROL))
    with pytest.raises(errors.ValueOutOfRange):
        world.chain.validate_transaction(resign([coin], neg.tx, [o[0], huge, o[2]], [w[0], TxOutWitness(), w[2]]))


def test_zero_value_spendable_output(paid: tuple[World, Transaction, list[Coin]]) -> None:
    world, _, _ = paid
    coin = world.coins[3]
    v = coin.opening.value - FEE
    # A real zero under a commitment, its proof honest about it (minimum 0), to a spendable script.
    zero = craft([coin], [Spec(v, spk(BOB)), Spec(0, spk(CAROL), min_value=0)], FEE, seed=12)
    assert ct.range_proof_info(zero.tx.output_witnesses[1].range_proof).min_value == 0
    with pytest.raises(errors.ConfidentialValueOutOfRange, match="output 1") as info:
        world.chain.validate_transaction(zero.tx)
    assert isinstance(info.value, errors.ValueOutOfRange)
    # A positive value whose proof still allows zero is refused the same way.
    allows = craft([coin], [Spec(v - COIN, spk(BOB)), Spec(COIN, spk(CAROL), min_value=0)], FEE, seed=13)
    with pytest.raises(errors.ConfidentialValueOutOfRange, match="output 1"):
        world.chain.validate_transaction(allows.tx)
    # The same zero to an OP_RETURN is a valid burn.
    burn = craft([coin], [Spec(v, spk(BOB)), Spec(0, b"\x6a", min_value=0)], FEE, seed=12)
    assert world.chain.validate_transaction(burn.tx) == FEE


def test_committed_value_without_its_proofs(paid: tuple[World, Transaction, list[Coin]]) -> None:
    world, tx, coins = paid
    w = list(tx.output_witnesses)
    cases = [
        (replace(w[0], range_proof=b""), errors.BadRangeProof, "needs a range proof"),
        (replace(w[0], surjection_proof=b""), errors.BadSurjectionProof, "needs a surjection proof"),
        (replace(w[0], range_proof=w[0].range_proof[:-1]), errors.BadRangeProof, "output 0"),
        (replace(w[0], surjection_proof=w[0].surjection_proof + b"\x00"), errors.BadSurjectionProof, "output 0"),
    ]
    for wit, error, match in cases:
        with pytest.raises(error, match=match):
            world.chain.validate_transaction(resign(coins, tx, witnesses=[wit, *w[1:]]))


# --- Peg-ins take part in surjection and balance -------------------------------------------


class FakePegins:
    """Claims the witness's first item (8 bytes LE) in the policy asset to its claim script."""

    def verify_pegin(self, tx: Transaction, index: int, height: int) -> TxOut:
        stack = tx.input_witnesses[index].pegin_witness
        return TxOut.explicit(ASSET, int.from_bytes(stack[0], "little"), stack[3])


def test_pegin_and_confidential_inputs_together() -> None:
    world = World(pegin_verifier=FakePegins())
    amount = 3 * COIN

    def pegin(n: int, claims: int = amount) -> Coin:
        stack = (claims.to_bytes(8, "little"), ASSET, b"\x6f" * 32, spk(ALICE), b"tx", b"proof")
        claimed = TxOut.explicit(ASSET, claims, spk(ALICE))
        return Coin(OutPoint(b"\x88" * 32, n), claimed, ct.InputOpening.explicit(ASSET, claims), ALICE, stack)

    coin = world.coins[0]
    total = amount + coin.opening.value
    specs = [
        ct.OutputSpec(total - COIN - FEE, ASSET, spk(BOB), ct.public_key(BOB_BLIND)),
        ct.OutputSpec(COIN, ASSET, spk(CAROL), ct.public_key(b"\xc0" * 32)),
        ct.OutputSpec(FEE, ASSET, b""),
    ]
    tx, _ = build([pegin(1), coin], specs, seed=14)
    assert tx.inputs[0].is_pegin
    assert world.chain.validate_transaction(tx) == FEE

    # Balanced, but the surjection proofs leave the peg-in out of their inputs.
    other = world.coins[1]
    crafted = [Spec(COIN, spk(BOB)), Spec(amount + other.opening.value - COIN - FEE, spk(CAROL))]
    good = craft([pegin(2), other], crafted, FEE, seed=15)
    assert world.chain.validate_transaction(good.tx) == FEE
    bad = craft([pegin(2), other], crafted, FEE, seed=15, proof_coins=[other])
    with pytest.raises(errors.BadSurjectionProof, match="output 0"):
        world.chain.validate_transaction(bad.tx)
    # The peg-in's amount counts in the tally: claiming one satoshi more unbalances.
    with pytest.raises(errors.ConfidentialUnbalanced):
        world.chain.validate_transaction(resign([pegin(2, amount + 1), other], good.tx))

    world.mine([tx])
    assert world.chain.is_pegin_claimed(OutPoint(b"\x88" * 32, 1))


# --- Blocks ----------------------------------------------------------------------------------


class SpyVerifier(ConfidentialTxVerifier):
    """Records the size of every batch of proofs verified."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []

    def verify_proofs(self, checks: Sequence[ProofCheck]) -> None:
        self.batches.append(len(checks))
        super().verify_proofs(checks)


def test_block_with_one_bad_proof_among_many_is_rejected_whole() -> None:
    spy = SpyVerifier(ASSET, cache=False)
    world = World(n_coins=12, verifier=spy)
    txs = [payment(world, first=2 * j, seed=20 + j, amount=3 * COIN)[0] for j in range(6)]
    bad = swap_range_proofs(world.coins[8:10], txs[4])
    before = world.snapshot()
    spy.batches.clear()
    block = world.block([*txs[:4], bad, txs[5]])
    with pytest.raises(errors.BadRangeProof, match=f"tx {bad.txid_hex} output 0"):
        world.chain.connect_block(block, world.time + 60)
    assert world.snapshot() == before
    assert spy.batches == [12]  # all of the block's proofs in one batch, none before it

    # Without the bad transaction the same others connect, their outputs confidential.
    spy.batches.clear()
    _, undo = world.mine(txs[:4] + txs[5:])
    assert spy.batches == [10] and undo.fees == 5 * 2 * FEE
    created = [e.output for _, e in undo.created if not e.is_coinbase]
    assert len(created) == 10 and all(o.value.is_commitment for o in created)


def test_mempool_then_block_verifies_each_proof_once() -> None:
    verifier = ConfidentialTxVerifier(ASSET)
    world = World(verifier=verifier)
    tx, _ = payment(world)
    cache = verifier.cache
    assert cache is not None
    hits, misses = cache.hits, cache.misses
    world.chain.validate_transaction(tx)
    assert (cache.hits - hits, cache.misses - misses) == (0, 4)  # 2 range + 2 surjection proofs
    # The chain state remembers the transaction passed: its block asks nothing again.
    world.mine([tx])
    assert (cache.hits - hits, cache.misses - misses) == (0, 4)
    # A chain state that did not check it itself (same blocks, same verifier)
    # runs its rules, and its proofs come from the cache.
    other = World(verifier=verifier)
    assert other.chain.tip_hash == world.chain.header_at(world.chain.tip_height - 1).hash
    hits, misses = cache.hits, cache.misses
    other.mine([tx])
    assert other.chain.tip_hash == world.chain.tip_hash
    assert (cache.hits - hits, cache.misses - misses) == (4, 0)


# --- Parallel gives what serial gives ----------------------------------------------------------


SEED = 20261101


def test_parallel_verification_matches_serial_for_random_orders_and_worker_counts() -> None:
    world = World(n_coins=12)
    verifier = ConfidentialTxVerifier(ASSET, max_workers=1, cache=False)
    checks: list[ProofCheck] = []
    for j in range(6):
        tx, coins = payment(world, first=2 * j, seed=40 + j, amount=3 * COIN)
        assets = [c.output.asset for c in coins]
        for i, out in enumerate(tx.outputs):
            if not out.is_explicit:
                checks.append(verifier.defer_output(out, tx.output_witnesses[i], assets, label=f"check {len(checks)}"))
    assert len(checks) == 12
    for workers in (1, 2, 4):
        verify_checks(checks, max_workers=workers)

    def corrupt(c: ProofCheck, other: ProofCheck, kind: int) -> ProofCheck:
        if kind == 0:
            return replace(c, range_proof=other.range_proof)
        if kind == 1:
            return replace(c, input_generators=c.input_generators[::-1])
        assert c.value_commitment is not None
        return replace(c, value_commitment=bytes([c.value_commitment[0] ^ 1]) + c.value_commitment[1:])

    kinds_seen: set[type[Exception]] = set()
    for trial in range(10):
        seed = SEED + trial
        rnd = random.Random(seed)
        items = list(checks)
        rnd.shuffle(items)
        for pos in rnd.sample(range(len(items)), 3):
            other = items[(pos + 1) % len(items)]
            items[pos] = corrupt(items[pos], other, rnd.randrange(3))
        # The reference: one check at a time, in order; the first failure is the answer.
        outcomes = [run_check(c) for c in items]
        first = next(e for e in outcomes if e is not None)
        expected = (type(first), str(first))
        kinds_seen.add(type(first))
        for workers in (1, 2, 3, 5, 8):
            with pytest.raises(errors.ConfidentialError) as info:
                verify_checks(items, max_workers=workers)
            assert (type(info.value), str(info.value)) == expected, f"seed {seed}, {workers} workers"
    assert kinds_seen >= {errors.BadRangeProof}


def test_a_partly_cached_batch_gives_what_serial_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cached checks run in the caller and only the others go to the pool;
    the error raised is still the lowest-index failing check's, cached or not."""
    world = World(n_coins=12)
    verifier = ConfidentialTxVerifier(ASSET, max_workers=1, cache=False)
    checks: list[ProofCheck] = []
    for j in range(6):
        tx, coins = payment(world, first=2 * j, seed=70 + j, amount=3 * COIN)
        assets = [c.output.asset for c in coins]
        for i, out in enumerate(tx.outputs):
            if not out.is_explicit:
                checks.append(verifier.defer_output(out, tx.output_witnesses[i], assets, label=f"check {len(checks)}"))
    cache = ct.VerificationCache()
    warm = checks[::2]
    verify_checks(warm, max_workers=2, cache=cache)
    assert len(cache) == 2 * len(warm)

    def no_pool(workers: int) -> object:
        raise AssertionError("a batch the cache answers needs no thread")

    with monkeypatch.context() as m:
        m.setattr("consensus.ct._pool", no_pool)
        hits = cache.hits
        verify_checks(warm, max_workers=2, cache=cache)
        assert cache.hits == hits + 2 * len(warm)
    rnd = random.Random(SEED)
    for trial in range(8):
        items = list(checks)
        for pos in rnd.sample(range(len(items)), 2):
            # A cached check keeps its cached proofs but changes its context:
            # swapping the inputs' order must miss the cache and fail.
            items[pos] = replace(items[pos], input_generators=items[pos].input_generators[::-1])
        rnd.shuffle(items)
        first = next(e for e in (run_check(c) for c in items) if e is not None)
        for workers in (2, 3):
            with pytest.raises(errors.ConfidentialError) as info:
                verify_checks(items, max_workers=workers, cache=cache)
            assert (type(info.value), str(info.value)) == (type(first), str(first)), f"seed {SEED}, trial {trial}"


def test_block_verification_is_the_same_on_one_core_and_many() -> None:
    worlds = {
        w: World(n_coins=8, verifier=ConfidentialTxVerifier(ASSET, max_workers=w, cache=False)) for w in (1, 2, 4)
    }
    assert len({x.chain.tip_hash for x in worlds.values()}) == 1  # built alike, so the same chain
    ref = worlds[1]
    txs = [payment(ref, first=2 * j, seed=60 + j, amount=3 * COIN)[0] for j in range(4)]
    txs[1] = swap_range_proofs(ref.coins[2:4], txs[1])
    txs[3] = sign(ref.coins[6:8][::-1], txs[3].outputs, txs[3].output_witnesses)  # surjection rings now wrong
    bad = {txs[1].txid: errors.BadRangeProof, txs[3].txid: errors.BadSurjectionProof}
    rnd = random.Random(SEED)
    for trial in range(6):
        order = list(txs)
        rnd.shuffle(order)
        block = ref.block(order)
        first_bad = next(t for t in order if t.txid in bad)
        outcomes = set()
        for world in worlds.values():
            with pytest.raises(errors.ConfidentialError) as info:
                world.chain.check_block(block, world.time + 60)
            outcomes.add((type(info.value), str(info.value)))
        assert len(outcomes) == 1, f"seed {SEED}, trial {trial}: {outcomes}"
        ((kind, message),) = outcomes
        assert kind is bad[first_bad.txid] and first_bad.txid_hex in message, f"seed {SEED}, trial {trial}"
    # And the good ones connect on every chain alike.
    good = [t for t in txs if t.txid not in bad]
    tips = set()
    for world in worlds.values():
        world.mine(good)
        tips.add(world.chain.tip_hash)
    assert len(tips) == 1


# --- Interoperability -----------------------------------------------------------------------


def test_confidential_transactions_parse_in_wallycore_with_the_same_txid() -> None:
    world = World()
    tx, _ = payment(world)
    coin = world.coins[2]
    mixed = craft(
        [coin],
        [
            Spec(COIN, spk(BOB), blind_asset=False),
            Spec(COIN, spk(CAROL), blind_value=False),
            Spec(coin.opening.value - 2 * COIN - FEE, spk(BOB)),
        ],
        FEE,
        seed=16,
    ).tx
    for t in (tx, mixed, world.block1.transactions[1]):
        raw = t.serialize()
        wtx = wally.tx_from_bytes(raw, WALLY_FLAGS)
        assert bytes(wally.tx_get_txid(wtx)) == t.txid
        assert bytes(wally.tx_to_bytes(wtx, WALLY_FLAGS)) == raw
        assert Transaction.parse(raw) == t
        for i, out in enumerate(t.outputs):
            assert bytes(wally.tx_get_output_asset(wtx, i)) == out.asset.raw
            assert bytes(wally.tx_get_output_value(wtx, i)) == out.value.raw
            assert bytes(wally.tx_get_output_rangeproof(wtx, i)) == t.output_witnesses[i].range_proof
            assert bytes(wally.tx_get_output_surjectionproof(wtx, i)) == t.output_witnesses[i].surjection_proof


# --- The verifier on its own ---------------------------------------------------------------


def test_verifier_protocol_methods_and_malformed_inputs(paid: tuple[World, Transaction, list[Coin]]) -> None:
    _, tx, coins = paid
    v = ConfidentialTxVerifier(ASSET, max_workers=2, cache=False)
    assets = [c.output.asset for c in coins]
    out, wit = tx.outputs[0], tx.output_witnesses[0]
    # The per-output protocol method, as a chain state without batching calls it.
    v.verify_output(out, wit, assets)
    with pytest.raises(errors.BadRangeProof):
        v.verify_output(out, tx.output_witnesses[1], assets)
    v.verify_balance([c.output for c in coins], tx.outputs)
    # Spent outputs whose asset is not a generator, or null.
    x = next(bytes([i]) * 32 for i in range(256) if not _on_curve(bytes([i]) * 32))
    for bad in (ConfidentialAsset(b"\x0a" + x), ConfidentialAsset(b"\x00")):
        with pytest.raises(errors.BadCommitment, match="input 1 asset"):
            v.defer_output(out, wit, [assets[0], bad], label="here")
    # A null value in the tally, and an explicit zero input under a committed asset.
    nulled = replace(coins[0].output, value=ConfidentialValue(b"\x00"))
    with pytest.raises(errors.BadCommitment, match="input 0"):
        v.verify_balance([nulled, coins[1].output], tx.outputs)
    zero_in = replace(coins[0].output, value=ConfidentialValue.explicit(0))
    with pytest.raises(errors.ConfidentialValueOutOfRange, match="input 0"):
        v.verify_balance([zero_in, coins[1].output], tx.outputs)
    with pytest.raises(ValueError):
        ConfidentialTxVerifier(ASSET, max_workers=0)
    with pytest.raises(ValueError):
        verify_checks([], max_workers=0)
