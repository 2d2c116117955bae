"""Chain state: valid spends, every rule's typed error, connect/disconnect,
atomic failure, and the peg-in and confidential hooks.

Fixed keys throughout (coincurve signs deterministically), a 2-of-3
federation, and a genesis that gives Alice 50 coins.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from coincurve import PrivateKey

from consensus import errors
from consensus.block import Block
from consensus.chainstate import COIN, MAX_MONEY, BlockUndo, ChainState, RejectConfidential, genesis_block
from consensus.hashes import hash160, merkle_root
from consensus.header import BlockHeader, BlockProof, build_solution, sign_block_hash
from consensus.params import ChainParams, FederationParams
from consensus.script import OP_0, multisig_script, push_data, push_int
from consensus.serialize import ser_compact_size
from consensus.standard import (
    SIGHASH_ALL,
    SIGHASH_ANYONECANPAY,
    SIGHASH_NONE,
    SIGHASH_SINGLE,
    p2wpkh_script,
    p2wpkh_script_code,
    p2wsh_script,
    pegout_script,
    sign_segwit_v0,
    signature_hash,
)
from consensus.transaction import (
    NULL_NONCE,
    NULL_OUTPOINT,
    AssetIssuance,
    ConfidentialAsset,
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
OTHER_ASSET = b"\x99" * 32
ALICE = PrivateKey(b"\x0a" * 32)
BOB = PrivateKey(b"\x0b" * 32)
CAROL = PrivateKey(b"\x0c" * 32)
MULTI = [PrivateKey(bytes([0x20 + i]) * 32) for i in range(3)]
WS = multisig_script(2, [k.public_key.format() for k in MULTI])
T0 = 1_700_000_000
FREE = 50 * COIN
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def pub(key: PrivateKey) -> bytes:
    return key.public_key.format()


def spk(key: PrivateKey) -> bytes:
    return p2wpkh_script(pub(key))


def pay(amount: int, script: bytes, asset: bytes = ASSET) -> TxOut:
    return TxOut.explicit(asset, amount, script)


def fee(amount: int) -> TxOut:
    return TxOut.explicit(ASSET, amount, b"")


def p2wpkh_witness(
    key: PrivateKey, tx: Transaction, index: int, value: int, hashtype: int = SIGHASH_ALL
) -> TxInWitness:
    code = p2wpkh_script_code(spk(key)[2:])
    sig = sign_segwit_v0(key, tx, index, code, ConfidentialValue.explicit(value), hashtype)
    return TxInWitness(script_witness=(sig, pub(key)))


def multisig_witness(
    keys: Sequence[PrivateKey], tx: Transaction, index: int, value: int, hashtype: int = SIGHASH_ALL
) -> TxInWitness:
    sigs = [sign_segwit_v0(k, tx, index, WS, ConfidentialValue.explicit(value), hashtype) for k in keys]
    return TxInWitness(script_witness=(b"", *sigs, WS))


def spend(
    key: PrivateKey,
    prev: OutPoint,
    value: int,
    outputs: Sequence[TxOut],
    *,
    sequence: int = 0xFFFFFFFF,
    locktime: int = 0,
    hashtype: int = SIGHASH_ALL,
) -> Transaction:
    tx = Transaction(2, (TxIn(prev, b"", sequence),), tuple(outputs), locktime)
    return tx.with_witnesses((p2wpkh_witness(key, tx, 0, value, hashtype),))


class Harness:
    """A chain, a clock, and the federation's keys to sign its blocks."""

    def __init__(self, **overrides: object) -> None:
        kwargs: dict[str, object] = dict(
            policy_asset=ASSET,
            initial_free_coins=FREE,
            initial_free_coins_script=spk(ALICE),
            coinbase_maturity=3,
            genesis_time=T0,
        )
        kwargs.update(overrides)
        self.params = ChainParams(FED, **kwargs)  # type: ignore[arg-type]
        self.chain = ChainState(self.params, **self.hooks())
        self.time = T0

    def hooks(self) -> dict[str, object]:
        return {}

    @property
    def genesis_coin(self) -> OutPoint:
        return OutPoint(self.chain.genesis.transactions[0].txid, 0)

    def candidate(
        self, txs: Sequence[Transaction], *, fee_script: bytes | None = None, time: int | None = None
    ) -> Block:
        return self.chain.assemble_block(list(txs), self.time + 60 if time is None else time, fee_script=fee_script)

    def sign(self, block: Block, signers: Sequence[int] = (0, 1)) -> Block:
        sigs = {i: sign_block_hash(SIGNERS[i], block.hash) for i in signers}
        return block.with_solution(b"\x00" + b"".join(push_data(sigs[i]) for i in sorted(sigs)))

    def block(self, txs: Sequence[Transaction], **kw: object) -> Block:
        return self.sign(self.candidate(txs, **kw))  # type: ignore[arg-type]

    def mine(self, txs: Sequence[Transaction] = (), **kw: object) -> tuple[Block, BlockUndo]:
        block = self.block(txs, **kw)
        self.time = block.header.time
        # Through the wire format, as a peer would deliver it.
        undo = self.chain.connect_block(Block.parse(block.serialize()), self.time)
        return block, undo

    def snapshot(self) -> tuple[object, ...]:
        return (dict(self.chain.utxos), self.chain.tip_hash, self.chain.tip_height, self.chain._txs.copy())


def _reblock(block: Block, txs: tuple[Transaction, ...] | None = None, **header: object) -> Block:
    """``block`` with other transactions or header fields, unsigned."""
    h = block.header
    fields = dict(
        version=h.version,
        prev_hash=h.prev_hash,
        merkle_root=h.merkle_root,
        time=h.time,
        height=h.height,
        proof=BlockProof(h.proof.challenge, b""),
    )
    fields.update(header)
    return Block(BlockHeader(**fields), block.transactions if txs is None else txs)  # type: ignore[arg-type]


# --- Genesis -----------------------------------------------------------------------


def test_genesis_is_deterministic_and_pays_the_free_coins():
    a, b = Harness(), Harness()
    assert a.chain.tip_hash == b.chain.tip_hash == genesis_block(a.params).hash
    assert a.chain.tip_height == 0
    h = a.chain.tip_header
    assert h.prev_hash == b"\x00" * 32 and h.proof.solution == b"" and h.proof.challenge == FED.challenge
    assert h.time == T0 and h.height == 0
    entry = a.chain.utxo(a.genesis_coin)
    assert entry is not None and entry.output.value.amount == FREE and not entry.is_coinbase
    assert len(a.chain.utxos) == 1
    # Without free coins the genesis creates nothing spendable.
    assert len(ChainState(ChainParams(FED, policy_asset=ASSET)).utxos) == 0
    with pytest.raises(ValueError):
        ChainState(ChainParams(FED, policy_asset=ASSET, initial_free_coins=1, initial_free_coins_script=b"\x51"))


# --- Valid spends ------------------------------------------------------------------


def test_p2wpkh_spend_validates_and_connects():
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 1000, spk(BOB)), fee(1000)])
    assert hx.chain.validate_transaction(tx) == 1000
    block, undo = hx.mine([tx])
    assert hx.chain.tip_height == 1 and hx.chain.tip_hash == block.hash
    assert undo.fees == 1000
    assert hx.chain.utxo(hx.genesis_coin) is None
    new = hx.chain.utxo(OutPoint(tx.txid, 0))
    assert new is not None and new.output.script_pubkey == spk(BOB) and new.height == 1
    assert hx.chain.utxo(OutPoint(tx.txid, 1)) is None  # the fee output is not spendable
    # Fees went to the coinbase's first output: a bare OP_RETURN by default.
    cb = block.transactions[0]
    assert cb.outputs[0].script_pubkey == b"\x6a" and cb.outputs[0].value.amount == 1000
    assert cb.inputs[0].script_sig.startswith(push_int(1))
    assert len(hx.chain.utxos) == 1


def test_fees_to_a_fee_script_are_a_maturing_coinbase_output():
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 700, spk(ALICE)), fee(700)])
    block, _ = hx.mine([tx], fee_script=spk(CAROL))
    coin = OutPoint(block.transactions[0].txid, 0)
    entry = hx.chain.utxo(coin)
    assert entry is not None and entry.is_coinbase and entry.output.value.amount == 700
    claim = spend(CAROL, coin, 700, [pay(700, spk(BOB))])
    with pytest.raises(errors.ImmatureSpend):
        hx.chain.validate_transaction(claim)  # next height 2, created at 1, maturity 3
    hx.mine()
    with pytest.raises(errors.ImmatureSpend):
        hx.chain.validate_transaction(claim)
    hx.mine()
    assert hx.chain.validate_transaction(claim) == 0  # height 4 - 1 >= 3
    with pytest.raises(ValueError):
        hx.chain.assemble_block([], hx.time + 60, fee_script=b"\x51")
    # With no fees there is nothing to claim: the first output is a zero burn.
    empty = hx.candidate([], fee_script=spk(CAROL))
    assert empty.transactions[0].outputs[0] == pay(0, b"\x6a")
    hx.chain.check_block(empty, empty.header.time, check_proof=False)


def _fund_multisig(hx: Harness, amount: int = 10 * COIN) -> OutPoint:
    tx = spend(
        ALICE, hx.genesis_coin, FREE, [pay(amount, p2wsh_script(WS)), pay(FREE - amount - 500, spk(ALICE)), fee(500)]
    )
    hx.mine([tx])
    return OutPoint(tx.txid, 0)


def _multisig_spend(
    prev: OutPoint, amount: int, keys: Sequence[PrivateKey], hashtype: int = SIGHASH_ALL
) -> Transaction:
    tx = Transaction(2, (TxIn(prev),), (pay(amount - 300, spk(BOB)), fee(300)))
    return tx.with_witnesses((multisig_witness(keys, tx, 0, amount, hashtype),))


@pytest.mark.parametrize("signers", [(0, 1), (0, 2), (1, 2)])
def test_p2wsh_2of3_spend(signers):
    hx = Harness()
    coin = _fund_multisig(hx)
    tx = _multisig_spend(coin, 10 * COIN, [MULTI[i] for i in signers])
    assert hx.chain.validate_transaction(tx) == 300
    hx.mine([tx])
    assert hx.chain.utxo(coin) is None


def test_p2wsh_multisig_failures_are_named():
    hx = Harness()
    coin = _fund_multisig(hx)
    good = _multisig_spend(coin, 10 * COIN, [MULTI[0], MULTI[2]])
    stack = good.input_witnesses[0].script_witness

    def with_stack(*items: bytes) -> Transaction:
        return good.with_witnesses((TxInWitness(script_witness=items),))

    with pytest.raises(errors.BadTxSignature):  # CHECKMULTISIG needs key order
        hx.chain.validate_transaction(with_stack(b"", stack[2], stack[1], WS))
    with pytest.raises(errors.BadTxSignature):  # the same key twice
        hx.chain.validate_transaction(with_stack(b"", stack[1], stack[1], WS))
    with pytest.raises(errors.ScriptVerifyError):  # m-1 signatures
        hx.chain.validate_transaction(with_stack(b"", stack[1], WS))
    with pytest.raises(errors.ScriptVerifyError):  # NULLDUMMY
        hx.chain.validate_transaction(with_stack(b"\x01", stack[1], stack[2], WS))
    with pytest.raises(errors.ScriptVerifyError):  # CLEANSTACK: an extra item
        hx.chain.validate_transaction(with_stack(b"", b"", stack[1], stack[2], WS))
    other_ws = multisig_script(2, [pub(ALICE), pub(BOB), pub(CAROL)])
    with pytest.raises(errors.ScriptVerifyError):  # script does not hash to the program
        hx.chain.validate_transaction(with_stack(b"", stack[1], stack[2], other_ws))
    with pytest.raises(errors.BadTxSignature):  # an outsider's signature
        outsider = sign_segwit_v0(ALICE, good, 0, WS, ConfidentialValue.explicit(10 * COIN))
        hx.chain.validate_transaction(with_stack(b"", stack[1], outsider, WS))
    assert hx.chain.validate_transaction(good) == 300


def test_p2wsh_non_multisig_script_is_non_standard():
    hx = Harness()
    script = bytes((0x51,))  # OP_TRUE: anyone could spend it, were it accepted
    fund = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 500, p2wsh_script(script)), fee(500)])
    hx.mine([fund])
    tx = Transaction(
        2,
        (TxIn(OutPoint(fund.txid, 0)),),
        (pay(FREE - 1000, spk(BOB)), fee(500)),
        0,
        (TxInWitness(script_witness=(script,)),),
    )
    with pytest.raises(errors.NonStandardScript):
        hx.chain.validate_transaction(tx)


@pytest.mark.parametrize(
    "hashtype",
    [
        SIGHASH_ALL,
        SIGHASH_NONE,
        SIGHASH_SINGLE,
        SIGHASH_ALL | SIGHASH_ANYONECANPAY,
        SIGHASH_SINGLE | SIGHASH_ANYONECANPAY,
    ],
)
def test_accepted_sighash_types(hashtype):
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)], hashtype=hashtype)
    assert hx.chain.validate_transaction(tx) == 100
    coin = _fund_multisig(hx)
    assert hx.chain.validate_transaction(_multisig_spend(coin, 10 * COIN, MULTI[:2], hashtype)) == 300


@pytest.mark.parametrize("hashtype", [0x00, 0x04, 0x41, 0x21, 0xC1])
def test_refused_sighash_types(hashtype):
    hx = Harness()
    tx = Transaction(2, (TxIn(hx.genesis_coin),), (pay(FREE - 100, spk(BOB)), fee(100)))
    # The type is refused before any hash is computed (libwally has none for
    # undefined types), so sign the SIGHASH_ALL hash and relabel it.
    digest = signature_hash(tx, 0, p2wpkh_script_code(spk(ALICE)[2:]), ConfidentialValue.explicit(FREE), SIGHASH_ALL)
    sig = ALICE.sign(digest, hasher=None) + bytes((hashtype,))
    tx = tx.with_witnesses((TxInWitness(script_witness=(sig, pub(ALICE))),))
    with pytest.raises(errors.BadTxSignature, match="sighash"):
        hx.chain.validate_transaction(tx)


def test_sighash_none_leaves_outputs_free_and_all_does_not():
    hx = Harness()
    outs = [pay(FREE - 100, spk(BOB)), fee(100)]
    for hashtype, ok in ((SIGHASH_NONE, True), (SIGHASH_ALL, False)):
        tx = spend(ALICE, hx.genesis_coin, FREE, outs, hashtype=hashtype)
        redirected = Transaction(tx.version, tx.inputs, (pay(FREE - 100, spk(CAROL)), fee(100)), 0, tx.input_witnesses)
        if ok:
            assert hx.chain.validate_transaction(redirected) == 100
        else:
            with pytest.raises(errors.BadTxSignature):
                hx.chain.validate_transaction(redirected)


# --- P2WPKH failures ---------------------------------------------------------------


def _der(r: int, s: int) -> bytes:
    def enc(x: int) -> bytes:
        b = x.to_bytes((x.bit_length() + 8) // 8, "big")  # a leading 0 when the top bit is set
        b = b.lstrip(b"\x00") or b"\x00"
        if b[0] & 0x80:
            b = b"\x00" + b
        return b"\x02" + bytes((len(b),)) + b

    body = enc(r) + enc(s)
    return b"\x30" + bytes((len(body),)) + body


def _rs(der: bytes) -> tuple[int, int]:
    lr = der[3]
    r = int.from_bytes(der[4 : 4 + lr], "big")
    s = int.from_bytes(der[6 + lr :], "big")
    return r, s


def test_p2wpkh_failures_are_named():
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 1000, spk(BOB)), fee(1000)])
    sig, key = tx.input_witnesses[0].script_witness

    def with_stack(*items: bytes, script_sig: bytes = b"") -> Transaction:
        t = Transaction(2, (TxIn(hx.genesis_coin, script_sig),), tx.outputs, 0, (TxInWitness(script_witness=items),))
        return t

    assert hx.chain.validate_transaction(with_stack(sig, key)) == 1000
    # A signature over something else (the wrong amount).
    wrong = sign_segwit_v0(ALICE, tx, 0, p2wpkh_script_code(spk(ALICE)[2:]), ConfidentialValue.explicit(FREE - 1))
    with pytest.raises(errors.BadTxSignature):
        hx.chain.validate_transaction(with_stack(wrong, key))
    # Another key: it does not hash to the program.
    with pytest.raises(errors.ScriptVerifyError, match="hash"):
        hx.chain.validate_transaction(with_stack(sig, pub(BOB)))
    # High S: the same signature, mirrored; valid ECDSA but refused (LOW_S).
    r, s = _rs(sig[:-1])
    high = _der(r, ORDER - s) + sig[-1:]
    with pytest.raises(errors.BadTxSignature, match="low"):
        hx.chain.validate_transaction(with_stack(high, key))
    # Not strict DER: wrong sequence tag, padded R.
    with pytest.raises(errors.BadTxSignature, match="DER"):
        hx.chain.validate_transaction(with_stack(b"\x31" + sig[1:], key))
    padded = b"\x30" + bytes((sig[1] + 1,)) + b"\x02" + bytes((sig[3] + 1,)) + b"\x00" + sig[4:]
    with pytest.raises(errors.BadTxSignature, match="DER"):
        hx.chain.validate_transaction(with_stack(padded, key))
    with pytest.raises(errors.BadTxSignature):
        hx.chain.validate_transaction(with_stack(b"", key))
    # Witness shape and scriptSig.
    with pytest.raises(errors.ScriptVerifyError):
        hx.chain.validate_transaction(with_stack(sig))
    with pytest.raises(errors.ScriptVerifyError):
        hx.chain.validate_transaction(with_stack(sig, key, b""))
    with pytest.raises(errors.ScriptVerifyError, match="scriptSig"):
        hx.chain.validate_transaction(with_stack(sig, key, script_sig=b"\x00"))
    # An uncompressed key is not a template key.
    uncompressed = ALICE.public_key.format(compressed=False)
    fund = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, b"\x00\x14" + hash160(uncompressed)), fee(100)])
    hx.mine([fund])
    t = Transaction(2, (TxIn(OutPoint(fund.txid, 0)),), (pay(FREE - 200, spk(BOB)), fee(100)))
    digest = signature_hash(t, 0, p2wpkh_script_code(hash160(uncompressed)), ConfidentialValue.explicit(FREE - 100), 1)
    t = t.with_witnesses((TxInWitness(script_witness=(ALICE.sign(digest, hasher=None) + b"\x01", uncompressed)),))
    with pytest.raises(errors.NonStandardScript):
        hx.chain.validate_transaction(t)


def test_high_s_signature_is_otherwise_valid():
    """The LOW_S refusal above is about encoding: the mirrored signature
    verifies once normalized, so the test is not passing by accident."""
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 1000, spk(BOB)), fee(1000)])
    sig = tx.input_witnesses[0].script_witness[0]
    r, s = _rs(sig[:-1])
    assert s <= ORDER // 2
    digest = signature_hash(tx, 0, p2wpkh_script_code(spk(ALICE)[2:]), ConfidentialValue.explicit(FREE), SIGHASH_ALL)
    assert ALICE.public_key.verify(_der(r, s), digest, hasher=None)


# --- Inputs ------------------------------------------------------------------------


def test_missing_inputs():
    hx = Harness()
    gtx = hx.chain.genesis.transactions[0]
    for prev in (OutPoint(b"\x42" * 32, 0), OutPoint(gtx.txid, 1)):
        tx = spend(ALICE, prev, FREE, [pay(FREE, spk(BOB))])
        with pytest.raises(errors.MissingInput):
            hx.chain.validate_transaction(tx)
    # An OP_RETURN output existed but was never spendable.
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 10, b"\x6a\x01\x01"), pay(10, spk(ALICE))])
    hx.mine([tx])
    with pytest.raises(errors.MissingInput):
        hx.chain.validate_transaction(spend(ALICE, OutPoint(tx.txid, 0), FREE - 10, [pay(FREE - 10, spk(BOB))]))


def test_double_spends():
    hx = Harness()
    a = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    b = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 200, spk(CAROL)), fee(200)])
    # Within one transaction.
    dup = Transaction(2, (TxIn(hx.genesis_coin), TxIn(hx.genesis_coin)), (pay(2 * FREE, spk(BOB)),))
    dup = dup.with_witnesses((p2wpkh_witness(ALICE, dup, 0, FREE), p2wpkh_witness(ALICE, dup, 1, FREE)))
    with pytest.raises(errors.DuplicateInput):
        hx.chain.validate_transaction(dup)
    # Across transactions of one block.
    before = hx.snapshot()
    with pytest.raises(errors.DoubleSpend):
        hx.chain.check_block(hx.block([a, b]), hx.time + 60)
    with pytest.raises(errors.DoubleSpend):
        hx.chain.connect_block(hx.block([a, b]), hx.time + 60)
    assert hx.snapshot() == before
    # Against an output already spent on the chain.
    hx.mine([a])
    with pytest.raises(errors.DoubleSpend):
        hx.chain.validate_transaction(b)
    with pytest.raises(errors.DuplicateTransaction):
        hx.chain.validate_transaction(a)


def test_spending_an_output_of_the_same_block():
    hx = Harness()
    a = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    b = spend(BOB, OutPoint(a.txid, 0), FREE - 100, [pay(FREE - 300, spk(CAROL)), fee(200)])
    _, undo = hx.mine([a, b])
    assert undo.fees == 300
    assert [op for op, _ in undo.created] == [OutPoint(b.txid, 0)]  # a's output came and went
    assert [op for op, _ in undo.spent] == [hx.genesis_coin]
    # In the wrong order, the second transaction spends what does not exist yet.
    hx2 = Harness()
    with pytest.raises(errors.MissingInput):
        hx2.chain.check_block(hx2.block([b, a]), hx2.time + 60)


# --- Amounts and assets ------------------------------------------------------------


@pytest.mark.parametrize("delta", [1, -1])
def test_unbalanced_by_one_satoshi(delta):
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 1000 + delta, spk(BOB)), fee(1000)])
    with pytest.raises(errors.ValuesUnbalanced):
        hx.chain.validate_transaction(tx)


def test_wrong_asset_and_out_of_range_values():
    hx = Harness()
    with pytest.raises(errors.WrongAsset):
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, [pay(FREE, spk(BOB), OTHER_ASSET)]))
    with pytest.raises(errors.WrongAsset):
        hx.chain.validate_transaction(
            spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 5, spk(BOB)), TxOut.explicit(OTHER_ASSET, 5, b"")])
        )
    with pytest.raises(errors.ValueOutOfRange):
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, [pay(MAX_MONEY + 1, spk(BOB))]))
    with pytest.raises(errors.ValueOutOfRange):
        outs = [pay(MAX_MONEY, spk(BOB)), pay(MAX_MONEY, spk(BOB))]
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, outs))
    # Elements refuses spendable zero-value outputs; an unspendable one is fine.
    with pytest.raises(errors.ValueOutOfRange, match="nothing"):
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, [pay(FREE, spk(BOB)), pay(0, spk(CAROL))]))
    assert (
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, [pay(FREE, spk(BOB)), pay(0, b"\x6a")])) == 0
    )


def test_output_templates():
    hx = Harness()
    p2pkh = b"\x76\xa9\x14" + b"\x01" * 20 + b"\x88\xac"
    p2sh = b"\xa9\x14" + b"\x01" * 20 + b"\x87"
    for script in (p2pkh, p2sh, b"\x51", b"\x00\x14" + b"\x01" * 19, b"\x6a\x51", b"\x6a\x05\x01"):
        with pytest.raises(errors.NonStandardScript):
            hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, [pay(FREE, script)]))
    with pytest.raises(errors.BadFeeOutput):
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, [pay(FREE, spk(BOB)), fee(0)]))
    committed_fee = TxOut(ConfidentialAsset.explicit(ASSET), ConfidentialValue(b"\x08" + b"\x01" * 32), NULL_NONCE, b"")
    with pytest.raises(errors.BadFeeOutput):
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, [pay(FREE, spk(BOB)), committed_fee]))
    # A burn and a peg-out are accepted outputs; their value leaves the UTXO set.
    pegout = pegout_script(b"\x6f" * 32, b"\x00\x14" + b"\x02" * 20, (b"\x02" + b"\x03" * 32, b"\x01" * 65))
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(10, b"\x6a\x04data"), pay(FREE - 110, pegout), fee(100)])
    assert hx.chain.validate_transaction(tx) == 100
    _, undo = hx.mine([tx])
    assert undo.created == ()


def test_empty_inputs_outputs_and_stray_coinbases():
    hx = Harness()
    signed = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE, spk(BOB))])
    with pytest.raises(errors.EmptyOutputs):
        hx.chain.validate_transaction(Transaction(2, signed.inputs, (), 0, signed.input_witnesses))
    with pytest.raises(errors.EmptyInputs):
        hx.chain.validate_transaction(Transaction(2, (), (pay(1, spk(BOB)),)))
    cb = Transaction(2, (TxIn(NULL_OUTPOINT, b"\x51\x00"),), (pay(0, b"\x6a"),))
    with pytest.raises(errors.BadCoinbase):
        hx.chain.validate_transaction(cb)
    mixed = Transaction(2, (TxIn(hx.genesis_coin), TxIn(NULL_OUTPOINT)), (pay(FREE, spk(BOB)),))
    with pytest.raises(errors.BadCoinbase):
        hx.chain.validate_transaction(mixed)


def test_locktime():
    hx = Harness()
    outs = [pay(FREE - 100, spk(BOB)), fee(100)]
    # Height lock: final only below the next height, unless every input is final.
    with pytest.raises(errors.NonFinalTransaction):
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, outs, sequence=0xFFFFFFFE, locktime=1))
    assert (
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, outs, sequence=0xFFFFFFFF, locktime=5)) == 100
    )
    hx.mine()
    assert (
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, outs, sequence=0xFFFFFFFE, locktime=1)) == 100
    )
    # Time lock: against the median time past.
    mtp = hx.chain.median_time_past()
    with pytest.raises(errors.NonFinalTransaction):
        hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, outs, sequence=0, locktime=mtp))
    assert hx.chain.validate_transaction(spend(ALICE, hx.genesis_coin, FREE, outs, sequence=0, locktime=mtp - 1)) == 100


def test_issuance_is_unsupported():
    hx = Harness()
    iss = AssetIssuance(b"\x00" * 32, b"\x01" * 32, ConfidentialValue.explicit(1000), ConfidentialValue.explicit(0))
    tx = Transaction(2, (TxIn(hx.genesis_coin, b"", 0xFFFFFFFF, iss),), (pay(FREE, spk(BOB)),))
    tx = tx.with_witnesses((p2wpkh_witness(ALICE, tx, 0, FREE),))
    with pytest.raises(errors.UnsupportedFeature, match="issu"):
        hx.chain.validate_transaction(tx)


def test_pegins_unsupported_by_default_and_confidential_opt_out():
    hx = Harness()
    tx = Transaction(2, (TxIn(OutPoint(b"\x77" * 32, 0), b"", 0xFFFFFFFF, None, True),), (pay(1000, spk(BOB)),))
    with pytest.raises(errors.UnsupportedFeature, match="peg-in"):
        hx.chain.validate_transaction(tx)
    conf = TxOut(
        ConfidentialAsset(b"\x0a" + b"\x01" * 32), ConfidentialValue(b"\x08" + b"\x02" * 32), NULL_NONCE, spk(BOB)
    )
    tx = spend(ALICE, hx.genesis_coin, FREE, [conf, fee(100)])
    # By default confidential outputs are verified (tests/test_ct_chain.py):
    # this one has no proofs at all.
    with pytest.raises(errors.BadSurjectionProof):
        hx.chain.validate_transaction(tx)
    # RejectConfidential is the explicit opt-out.
    opted_out = ChainState(hx.params, confidential_verifier=RejectConfidential())
    with pytest.raises(errors.UnsupportedFeature, match="confidential"):
        opted_out.validate_transaction(tx)
    # A proof on an explicit output is refused, not ignored.
    tx = Transaction(2, (TxIn(hx.genesis_coin),), (pay(FREE, spk(BOB)),), 0, (), (TxOutWitness(b"", b"\x01"),))
    tx = tx.with_witnesses((p2wpkh_witness(ALICE, tx, 0, FREE),))
    with pytest.raises(errors.ConfidentialError):
        hx.chain.validate_transaction(tx)


# --- Hooks -------------------------------------------------------------------------


class FakePegins:
    """Claims whatever the witness says: first item the amount (8 bytes LE)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int, int]] = []

    def verify_pegin(self, tx: Transaction, index: int, height: int) -> TxOut:
        self.calls.append((tx.txid, index, height))
        stack = tx.input_witnesses[index].pegin_witness
        if len(stack) != 6:
            raise errors.PegInError("peg-in witness has 6 items")
        return TxOut.explicit(ASSET, int.from_bytes(stack[0], "little"), stack[3])


class PegHarness(Harness):
    def hooks(self) -> dict[str, object]:
        self.pegins = FakePegins()
        return {"pegin_verifier": self.pegins}


def _pegin_tx(mainchain: OutPoint, amount: int, to: PrivateKey = BOB) -> Transaction:
    stack = (amount.to_bytes(8, "little"), ASSET, b"\x6f" * 32, spk(ALICE), b"tx", b"proof")
    tx = Transaction(2, (TxIn(mainchain, b"", 0xFFFFFFFF, None, True),), (pay(amount - 100, spk(to)), fee(100)))
    unsigned = tx.with_witnesses((TxInWitness(pegin_witness=stack),))
    sig = p2wpkh_witness(ALICE, unsigned, 0, amount).script_witness
    return tx.with_witnesses((TxInWitness(script_witness=sig, pegin_witness=stack),))


def test_pegin_hook_and_claims():
    hx = PegHarness()
    main = OutPoint(b"\x88" * 32, 1)
    tx = _pegin_tx(main, 5 * COIN)
    assert hx.chain.validate_transaction(tx) == 100
    assert hx.pegins.calls[-1] == (tx.txid, 0, 1)
    # Two claims of one mainchain output in one block.
    other = _pegin_tx(main, 5 * COIN, CAROL)
    with pytest.raises(errors.PegInAlreadyClaimed):
        hx.chain.check_block(hx.block([tx, other]), hx.time + 60)
    _, undo = hx.mine([tx])
    assert undo.pegins_claimed == (main,) and hx.chain.is_pegin_claimed(main)
    with pytest.raises(errors.PegInAlreadyClaimed):
        hx.chain.validate_transaction(other)
    # The claimed output's script is enforced like any spent output.
    bad = Transaction(
        2,
        tx.inputs,
        tx.outputs,
        0,
        (TxInWitness(script_witness=(b"\x30" * 70, pub(ALICE)), pegin_witness=tx.input_witnesses[0].pegin_witness),),
    )
    hx2 = PegHarness()
    with pytest.raises(errors.BadTxSignature):
        hx2.chain.validate_transaction(bad)
    # Rolling the block back releases the claim.
    hx.chain.disconnect_block(undo)
    assert not hx.chain.is_pegin_claimed(main)
    assert hx.chain.validate_transaction(other) == 100
    # Peg-in witness on a non-peg-in input.
    t = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE, spk(BOB))])
    t = t.with_witnesses((replace(t.input_witnesses[0], pegin_witness=(b"x",)),))
    with pytest.raises(errors.ScriptVerifyError, match="peg-in"):
        hx.chain.validate_transaction(t)


def test_a_block_with_a_pegin_is_checked_in_full_every_time():
    """A peg-in's validity also depends on the mainchain as the member sees
    it, which can change between two checks: such blocks are not remembered."""
    hx = PegHarness()
    tx = _pegin_tx(OutPoint(b"\x88" * 32, 1), 5 * COIN)
    candidate = hx.candidate([tx])
    now = candidate.header.time
    hx.chain.check_block(candidate, now, check_proof=False)
    hx.chain.check_block(candidate, now, check_proof=False)
    hx.chain.connect_block(hx.sign(candidate), now)
    assert [c[0] for c in hx.pegins.calls] == [tx.txid] * 3


class FakeConfidential:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.outputs: list[tuple[TxOut, TxOutWitness, tuple[ConfidentialAsset, ...]]] = []
        self.balances: list[tuple[tuple[TxOut, ...], tuple[TxOut, ...]]] = []

    def verify_output(self, output: TxOut, witness: TxOutWitness, input_assets: Sequence[ConfidentialAsset]) -> None:
        self.outputs.append((output, witness, tuple(input_assets)))
        if not self.ok:
            raise errors.ConfidentialError("range proof does not verify")

    def verify_balance(self, inputs: Sequence[TxOut], outputs: Sequence[TxOut]) -> None:
        self.balances.append((tuple(inputs), tuple(outputs)))


def test_confidential_hook_call_site():
    fake = FakeConfidential()
    chain = ChainState(Harness().params, confidential_verifier=fake)
    coin = OutPoint(chain.genesis.transactions[0].txid, 0)
    conf = TxOut(
        ConfidentialAsset(b"\x0a" + b"\x01" * 32), ConfidentialValue(b"\x08" + b"\x02" * 32), NULL_NONCE, spk(BOB)
    )
    proofs = TxOutWitness(b"\x01" * 40, b"\x02" * 100)
    tx = Transaction(2, (TxIn(coin),), (conf, fee(100)), 0, (), (proofs, TxOutWitness()))
    tx = tx.with_witnesses((p2wpkh_witness(ALICE, tx, 0, FREE),))
    assert chain.validate_transaction(tx) == 100
    genesis_out = chain.utxo(coin).output  # type: ignore[union-attr]
    assert fake.outputs == [(conf, proofs, (genesis_out.asset,))]
    assert fake.balances == [((genesis_out,), tx.outputs)]
    fake.ok = False
    with pytest.raises(errors.ConfidentialError):
        chain.validate_transaction(tx)
    # The fee output must still be explicit and of the policy asset.
    bad = Transaction(2, (TxIn(coin),), (conf, TxOut.explicit(OTHER_ASSET, 100, b"")), 0, (), (proofs, TxOutWitness()))
    with pytest.raises(errors.WrongAsset):
        chain.validate_transaction(bad)


# --- Block rules -------------------------------------------------------------------


def test_unsigned_candidate_checks_without_proof_and_not_with_it():
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    candidate = hx.candidate([tx])
    hx.chain.check_block(candidate, hx.time + 60, check_proof=False)
    with pytest.raises(errors.BlockSignatureError):  # an empty solution has not even the dummy
        hx.chain.check_block(candidate, hx.time + 60)
    with pytest.raises(errors.ThresholdNotMet):
        hx.chain.check_block(candidate.with_solution(b"\x00"), hx.time + 60)
    signed = hx.sign(candidate)
    assert signed.hash == candidate.hash
    hx.chain.connect_block(signed, hx.time + 60)


def test_header_rules():
    hx = Harness()
    hx.mine()
    good = hx.candidate([])
    now = good.header.time
    cases = [
        (_reblock(good, height=3), errors.BadHeight),
        (_reblock(good, prev_hash=b"\x01" * 32), errors.BadPrevHash),
        (_reblock(good, time=hx.chain.median_time_past()), errors.TimeTooOld),
        (_reblock(good, merkle_root=b"\x02" * 32), errors.BadMerkleRoot),
        (_reblock(good, proof=BlockProof(FederationParams(FED.signing_keys, 3).challenge, b"")), errors.BadChallenge),
    ]
    for block, error in cases:
        with pytest.raises(error):
            hx.chain.check_block(block, now, check_proof=False)
    late = _reblock(good, time=now + hx.params.max_future_block_time + 1)
    with pytest.raises(errors.TimeTooNew):
        hx.chain.check_block(late, now, check_proof=False)
    hx.chain.check_block(_reblock(good, time=now + hx.params.max_future_block_time), now, check_proof=False)
    hx.chain.check_block(_reblock(good, time=hx.chain.median_time_past() + 1), now, check_proof=False)


def test_median_time_past():
    hx = Harness()
    times = [T0 + 600, T0 + 700, T0 + 650, T0 + 900, T0 + 660]
    for t in times:
        mtp = hx.chain.median_time_past()
        with pytest.raises(errors.TimeTooOld):
            hx.chain.check_block(hx.sign(hx.candidate([], time=mtp)), t)
        block = hx.sign(hx.candidate([], time=t))
        hx.chain.connect_block(block, t)  # earlier than its predecessor, but after the MTP
    assert hx.chain.median_time_past() == sorted([T0, *times])[3] == T0 + 660
    span = ChainState(replace(hx.params, median_time_span=3))
    assert span.median_time_past() == T0
    assert [hx.chain.header_at(i).time for i in range(6)] == [T0, *times]
    assert [h.time for h in hx.chain.recent_headers(2)] == times[-2:]


def test_signature_rules():
    hx = Harness()
    candidate = hx.candidate([])
    now = candidate.header.time
    with pytest.raises(errors.ThresholdNotMet):  # m - 1 signatures
        hx.chain.check_block(hx.sign(candidate, (2,)), now)
    outsider = sign_block_hash(ALICE, candidate.hash)
    only_one = sign_block_hash(SIGNERS[0], candidate.hash)
    with pytest.raises(errors.BadBlockSignature):
        hx.chain.check_block(candidate.with_solution(b"\x00" + push_data(only_one) + push_data(outsider)), now)
    with pytest.raises(errors.DuplicateSignature):
        hx.chain.check_block(candidate.with_solution(b"\x00" + push_data(only_one) + push_data(only_one)), now)
    for signers in ((0, 1), (0, 2), (1, 2)):
        hx.chain.check_block(hx.sign(candidate, signers), now)
    assert (
        build_solution(FED, {2: sign_block_hash(SIGNERS[2], candidate.hash), 0: only_one})
        == hx.sign(candidate, (0, 2)).header.proof.solution
    )


def test_coinbase_rules():
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    good = hx.candidate([tx])
    now = good.header.time
    cb = good.transactions[0]

    def with_coinbase(new_cb: Transaction, rest: tuple[Transaction, ...] = (tx,)) -> Block:
        txs = (new_cb, *rest)
        return _reblock(good, txs, merkle_root=merkle_root([t.txid for t in txs]))

    # Pays more than the fees.
    over = Transaction(2, cb.inputs, (pay(101, b"\x6a"), cb.outputs[1]), 0, cb.input_witnesses)
    with pytest.raises(errors.BadCoinbase, match="more than"):
        hx.chain.check_block(with_coinbase(over), now, check_proof=False)
    # Height push.
    wrong_height = Transaction(2, (TxIn(NULL_OUTPOINT, push_int(7) + b"\x00"),), cb.outputs, 0, cb.input_witnesses)
    with pytest.raises(errors.BadCoinbase, match="BIP34"):
        hx.chain.check_block(with_coinbase(wrong_height), now, check_proof=False)
    # Not first / twice.
    with pytest.raises(errors.BadCoinbase):
        hx.chain.check_block(with_coinbase(tx, (cb,)), now, check_proof=False)
    second = Transaction(2, (TxIn(NULL_OUTPOINT, push_int(1) + b"\x01"),), (pay(0, b"\x6a"),))
    with pytest.raises(errors.BadCoinbase):
        hx.chain.check_block(with_coinbase(cb, (tx, second)), now, check_proof=False)
    with pytest.raises(errors.BadCoinbase):
        hx.chain.check_block(_reblock(good, (), merkle_root=b"\x00" * 32), now, check_proof=False)
    # Coinbase outputs: templates and asset.
    fee_shaped = Transaction(2, cb.inputs, (pay(100, b""), cb.outputs[1]), 0, cb.input_witnesses)
    with pytest.raises(errors.BadCoinbase):
        hx.chain.check_block(with_coinbase(fee_shaped), now, check_proof=False)
    zero = Transaction(2, cb.inputs, (pay(0, spk(CAROL)), cb.outputs[1]), 0, cb.input_witnesses)
    with pytest.raises(errors.ValueOutOfRange):
        hx.chain.check_block(with_coinbase(zero), now, check_proof=False)
    other = Transaction(2, cb.inputs, (pay(100, b"\x6a", OTHER_ASSET), cb.outputs[1]), 0, cb.input_witnesses)
    with pytest.raises(errors.WrongAsset):
        hx.chain.check_block(with_coinbase(other), now, check_proof=False)
    # Junk in the coinbase's uncommitted input witness.
    junk = cb.with_witnesses((replace(cb.input_witnesses[0], pegin_witness=(b"junk",)),))
    with pytest.raises(errors.BadCoinbase):
        hx.chain.check_block(with_coinbase(junk), now, check_proof=False)


def test_witness_commitment_rule():
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    good = hx.candidate([tx])
    # Another valid signature for the same transaction: same txid, other witness.
    other_sig = spend(ALICE, hx.genesis_coin, FREE, tx.outputs, hashtype=SIGHASH_ALL | SIGHASH_ANYONECANPAY)
    assert other_sig.txid == tx.txid and other_sig.wtxid != tx.wtxid
    swapped = Block(good.header, (good.transactions[0], other_sig))
    assert hx.chain.validate_transaction(other_sig) == 100
    with pytest.raises(errors.BadWitnessCommitment):
        hx.chain.check_block(swapped, good.header.time, check_proof=False)
    hx.chain.check_block(good, good.header.time, check_proof=False)


def test_duplicate_transaction_in_a_block():
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    block = hx.candidate([tx, tx])
    with pytest.raises(errors.DuplicateTransaction):
        hx.chain.check_block(block, block.header.time, check_proof=False)


def test_size_limits():
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    signed = hx.block([tx])
    now = signed.header.time
    tight = ChainState(replace(hx.params, max_block_weight=signed.weight))
    tight.check_block(signed, now)
    smaller = ChainState(replace(hx.params, max_block_weight=signed.weight - 1))
    with pytest.raises(errors.BlockWeightExceeded):
        smaller.check_block(signed, now)
    small = ChainState(replace(hx.params, max_block_serialized_size=signed.size - 1))
    with pytest.raises(errors.BlockTooLarge):
        small.check_block(signed, now)
    # An unsigned candidate is checked with room for the largest solution, so
    # that it cannot pass as a candidate and fail once signed.
    unsigned = hx.candidate([tx])
    reserve = 4 * (len(ser_compact_size(FED.max_solution_size)) + FED.max_solution_size - 1)
    room = ChainState(replace(hx.params, max_block_weight=unsigned.weight + reserve))
    room.check_block(unsigned, now, check_proof=False)
    no_room = ChainState(replace(hx.params, max_block_weight=unsigned.weight + reserve - 1))
    assert unsigned.weight < no_room.params.max_block_weight
    with pytest.raises(errors.BlockWeightExceeded):
        no_room.check_block(unsigned, now, check_proof=False)
    with pytest.raises(errors.TxTooLarge):
        ChainState(replace(hx.params, max_block_weight=tx.weight - 1)).validate_transaction(tx)


# --- Connect, disconnect, atomicity ------------------------------------------------


def _busy_block(hx: Harness) -> list[Transaction]:
    """A block's worth of transactions: a chain of in-block spends, a
    multisig output, a fee claim."""
    a = spend(
        ALICE,
        hx.genesis_coin,
        FREE,
        [pay(20 * COIN, spk(BOB)), pay(29 * COIN, p2wsh_script(WS)), pay(COIN - 500, spk(ALICE)), fee(500)],
    )
    b = spend(BOB, OutPoint(a.txid, 0), 20 * COIN, [pay(20 * COIN - 300, spk(CAROL)), fee(300)])
    return [a, b]


def test_a_block_checked_again_on_the_same_tip_rechecks_its_header_and_its_transactions_tuple():
    """The chain remembers a block whose transactions passed on the tip; a
    second check of it re-runs every header rule, and only the very same
    transactions skip their rules."""
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    good = hx.candidate([tx])
    now = good.header.time
    hx.chain.check_block(good, now, check_proof=False)
    # Same hash, other witness: not the same transactions, so checked in full.
    other_sig = spend(ALICE, hx.genesis_coin, FREE, tx.outputs, hashtype=SIGHASH_ALL | SIGHASH_ANYONECANPAY)
    swapped = Block(good.header, (good.transactions[0], other_sig))
    assert swapped.hash == good.hash
    with pytest.raises(errors.BadWitnessCommitment):
        hx.chain.check_block(swapped, now, check_proof=False)
    # Header rules still apply to the remembered block.
    with pytest.raises(errors.TimeTooNew):
        hx.chain.check_block(good, now - hx.params.max_future_block_time - 1, check_proof=False)
    with pytest.raises(errors.BlockSignatureError):
        hx.chain.connect_block(good, now)
    with pytest.raises(errors.ThresholdNotMet):
        hx.chain.connect_block(good.with_solution(b"\x00"), now)
    undo = hx.chain.connect_block(hx.sign(good), now)
    assert undo.fees == 100 and hx.chain.tip_hash == good.hash
    assert hx.chain.utxo(OutPoint(tx.txid, 0)) is not None and hx.chain.utxo(hx.genesis_coin) is None


def test_transaction_rules_run_once_per_block_and_tip(monkeypatch: pytest.MonkeyPatch):
    hx = Harness()
    calls: list[bytes] = []
    check_tx = ChainState._check_tx

    def counting(self: ChainState, tx: Transaction, *args: object, **kwargs: object) -> int:
        calls.append(tx.txid)
        return check_tx(self, tx, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ChainState, "_check_tx", counting)
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    candidate = hx.candidate([tx])
    now = candidate.header.time
    hx.chain.check_block(candidate, now, check_proof=False)
    hx.chain.check_block(candidate, now, check_proof=False)
    undo = hx.chain.connect_block(hx.sign(candidate), now)
    assert calls == [tx.txid]
    # Connecting (or disconnecting) forgets: back on the old tip, checked again.
    hx.chain.disconnect_block(undo)
    hx.chain.connect_block(hx.sign(candidate), now)
    assert calls == [tx.txid, tx.txid]
    # A block parsed from the wire holds other objects: checked in full.
    hx.chain.disconnect_block(undo)
    hx.chain.check_block(candidate, now, check_proof=False)
    hx.chain.connect_block(Block.parse(hx.sign(candidate).serialize()), now)
    assert calls == [tx.txid] * 4


def test_a_transaction_the_mempool_checked_is_not_checked_again_in_a_block(monkeypatch: pytest.MonkeyPatch):
    hx = Harness()
    each = (FREE - 100) // 3
    split = spend(ALICE, hx.genesis_coin, FREE, [pay(each, spk(ALICE)) for _ in range(3)] + [fee(FREE - 3 * each)])
    hx.mine([split])
    coins = [OutPoint(split.txid, i) for i in range(3)]
    calls: list[bytes] = []
    check_tx = ChainState._check_tx

    def counting(self: ChainState, tx: Transaction, *args: object, **kwargs: object) -> int:
        calls.append(tx.txid)
        return check_tx(self, tx, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ChainState, "_check_tx", counting)
    a = spend(ALICE, coins[0], each, [pay(each - 100, spk(BOB)), fee(100)])
    b = spend(ALICE, coins[1], each, [pay(each - 100, spk(BOB)), fee(100)])
    assert hx.chain.validate_transaction(a) == 100
    assert hx.chain.validate_transaction(b) == 100
    hx.mine([])  # the tip moves on; a and b still spend the same, untouched coins
    calls.clear()
    # From the wire (other objects, same bytes): a and b are known, c is not.
    c = spend(ALICE, coins[2], each, [pay(each - 100, spk(CAROL)), fee(100)])
    block = Block.parse(hx.block([a, b, c]).serialize())
    undo = hx.chain.connect_block(block, block.header.time)
    assert calls == [c.txid] and undo.fees == 300
    # Another witness for the same transaction is other bytes: checked in full.
    hx.chain.disconnect_block(undo)
    a2 = spend(ALICE, coins[0], each, a.outputs, hashtype=SIGHASH_ALL | SIGHASH_ANYONECANPAY)
    assert a2.txid == a.txid and a2.wtxid != a.wtxid
    calls.clear()
    hx.chain.check_block(hx.candidate([a2]), hx.time + 60, check_proof=False)
    assert calls == [a2.txid]


def test_a_known_transaction_is_checked_again_when_its_inputs_changed(monkeypatch: pytest.MonkeyPatch):
    hx = Harness()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)])
    rival = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 200, spk(CAROL)), fee(200)])
    hx.chain.validate_transaction(tx)
    hx.chain.validate_transaction(rival)
    # Both known valid alone; in one block the second double-spends.
    with pytest.raises(errors.DoubleSpend):
        hx.chain.check_block(hx.candidate([rival, tx]), hx.time + 60, check_proof=False)
    _, undo = hx.mine([rival])
    with pytest.raises(errors.DoubleSpend):
        hx.chain.validate_transaction(tx)
    with pytest.raises(errors.DoubleSpend):
        hx.chain.check_block(hx.candidate([tx]), hx.time + 60, check_proof=False)
    # Rolled back below the height it was checked at: checked in full, and valid again.
    hx.chain.disconnect_block(undo)
    hx.chain.check_block(hx.candidate([tx]), hx.time + 60, check_proof=False)


def test_a_known_transaction_still_needs_its_lock_time_in_a_lower_block():
    hx = Harness()
    hx.mine()
    hx.mine()
    _, undo = hx.mine()
    tx = spend(ALICE, hx.genesis_coin, FREE, [pay(FREE - 100, spk(BOB)), fee(100)], sequence=0, locktime=3)
    assert hx.chain.validate_transaction(tx) == 100  # final in the next block, height 4
    hx.chain.disconnect_block(undo)
    with pytest.raises(errors.NonFinalTransaction):  # height 3 is below what it was checked at
        hx.chain.check_block(hx.candidate([tx]), hx.time + 60, check_proof=False)


def test_connect_then_disconnect_restores_everything():
    hx = Harness()
    hx.mine()
    before = hx.snapshot()
    block, undo = hx.mine(_busy_block(hx), fee_script=spk(CAROL))
    assert hx.snapshot() != before
    assert undo.block_hash == block.hash and undo.height == 2 and undo.fees == 800
    assert {op for op, _ in undo.created} == set(hx.chain.utxos) - set(before[0])  # type: ignore[arg-type]
    hx.chain.disconnect_block(undo)
    assert hx.snapshot() == before
    # And the block connects again to the same state.
    block2 = Block.parse(block.serialize())
    undo2 = hx.chain.connect_block(block2, hx.time)
    assert undo2 == undo
    with pytest.raises(ValueError):
        hx.chain.disconnect_block(BlockUndo(1, b"\x00" * 32, b"\x00" * 32, (), (), (), (), 0))


def test_disconnecting_back_to_genesis():
    hx = Harness()
    start = hx.snapshot()
    undos = []
    txs = _busy_block(hx)
    for batch in ([txs[0]], [txs[1]], []):
        undos.append(hx.mine(batch)[1])
    for undo in reversed(undos):
        hx.chain.disconnect_block(undo)
    assert hx.snapshot() == start


def test_a_block_failing_at_its_last_transaction_changes_nothing():
    hx = Harness()
    a, b = _busy_block(hx)
    bad = spend(CAROL, OutPoint(b.txid, 0), 20 * COIN - 300, [pay(20 * COIN - 300, spk(ALICE))])
    sig, key = bad.input_witnesses[0].script_witness
    r, s = _rs(sig[:-1])
    forged = _der(r, s - 1) + sig[-1:]
    bad = bad.with_witnesses((TxInWitness(script_witness=(forged, key)),))
    before = hx.snapshot()
    block = hx.block([a, b, bad])
    with pytest.raises(errors.BadTxSignature):
        hx.chain.connect_block(block, block.header.time)
    assert hx.snapshot() == before
    # Without the bad transaction the same spends connect.
    hx.mine([a, b])
    assert hx.chain.tip_height == 1


def test_assembled_block_is_valid_and_parses():
    hx = Harness()
    txs = _busy_block(hx)
    candidate = hx.candidate(txs, fee_script=p2wsh_script(WS))
    assert candidate.header.proof.solution == b""
    assert candidate.header.height == 1 and candidate.header.prev_hash == hx.chain.tip_hash
    assert candidate.compute_merkle_root() == candidate.header.merkle_root
    assert candidate.witness_commitment_ok()
    cb = candidate.transactions[0]
    assert cb.outputs[0].value.amount == 800 and cb.outputs[0].script_pubkey == p2wsh_script(WS)
    assert cb.input_witnesses[0].script_witness == (b"\x00" * 32,)
    assert cb.inputs[0].script_sig == push_int(1) + bytes((OP_0,))
    assert Block.parse(candidate.serialize()) == candidate
    hx.chain.check_block(candidate, candidate.header.time, check_proof=False)


# --- Robustness: validation raises only consensus errors -----------------------------


def test_mutated_transactions_and_blocks_raise_only_consensus_errors():
    """Bytes that parse but break rules must be refused with a typed error,
    never with an exception from a library underneath (wally, coincurve)."""
    seed = 99
    rng = random.Random(seed)
    hx = PegHarness()
    coin = _fund_multisig(hx)
    txs = [
        spend(ALICE, OutPoint(hx.chain.genesis.transactions[0].txid, 0), FREE, [pay(FREE - 1, spk(BOB)), fee(1)]),
        _multisig_spend(coin, 10 * COIN, MULTI[1:]),
        _pegin_tx(OutPoint(b"\x88" * 32, 1), 5 * COIN),
    ]
    raws = [tx.serialize() for tx in txs]
    block_raw = hx.block(txs[1:]).serialize()
    outcomes: dict[str, int] = {}
    for i in range(3000):
        base = rng.choice([*raws, block_raw])
        b = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        data = bytes(b)
        try:
            if base is block_raw:
                hx.chain.check_block(Block.parse(data), hx.time + 60)
            else:
                hx.chain.validate_transaction(Transaction.parse(data))
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except errors.ConsensusError as e:
            outcomes[e.code] = outcomes.get(e.code, 0) + 1
        except Exception as e:  # pragma: no cover - the failure report
            pytest.fail(f"seed {seed}, case {i}: {type(e).__name__}: {e} on {data.hex()}")
    # The mutations reach the validator, not just the parser, and many rules.
    assert outcomes.get("ParseError", 0) < 1000, outcomes
    assert len(outcomes) >= 10, outcomes
