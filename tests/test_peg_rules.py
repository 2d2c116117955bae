"""The peg-in side of the peg (consensus.peg, consensus.mainchain).

* The fedpegscript: Liquid's real one parses to 11-of-15 / 4032 / 2-of-3
  and rebuilds byte for byte; ours round-trip; non-canonical ones refuse.
* Peg-in addresses: Liquid's tweaked script and address (wallycore's
  vectors from the real chain), ours against wallycore on scripts without
  OP_ELSE, and the documented Elements/wallycore difference on a script
  with one; tweaked private keys match tweaked public keys.
* Elements' own regtest peg-in (wallycore's vector) parses item by item.
* Claims: accepted through ChainState with a hand-built mainchain
  transaction, block header and BIP37 proof, and a fake mainchain view;
  every rejection by name; double claims in one transaction, in one block
  and after an earlier block.

Fixed keys throughout; mainchain headers are ground to regtest's proof of
work deterministically (nonce from 0).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import wallycore as wally
from coincurve import PrivateKey, PublicKey

from consensus import errors
from consensus.block import Block
from consensus.chainstate import COIN, ChainState
from consensus.hashes import hash160, hash_to_hex, merkle_root, sha256
from consensus.header import sign_block_hash
from consensus.mainchain import (
    MAINNET,
    REGTEST,
    TESTNET,
    BtcBlockHeader,
    BtcTransaction,
    BtcTxIn,
    BtcTxOut,
    MerkleBlock,
    PartialMerkleTree,
    decode_segwit_address,
    encode_segwit_address,
)
from consensus.params import ChainParams, FederationParams
from consensus.peg import (
    COINBASE_MATURITY,
    PakEntry,
    PegInRules,
    PegInWitness,
    PegOutRules,
    PegParams,
    build_pegin_witness,
    calculate_contract,
    liquid_fedpegscript,
    match_liquid_watchman,
    parse_fedpegscript,
    pegin_tweak,
    tweak_private_key,
    tweak_pubkey,
)
from consensus.script import OP_ELSE, multisig_script, push_data, push_int
from consensus.standard import p2wpkh_script, p2wpkh_script_code, p2wsh_script, sign_segwit_v0
from consensus.transaction import ConfidentialValue, OutPoint, Transaction, TxIn, TxInWitness, TxOut

VECTORS = Path(__file__).parent / "vectors" / "peg"
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# --- Fixed keys and parameters ---------------------------------------------------------

SIGNERS = [PrivateKey(bytes([0x01 + i]) * 32) for i in range(3)]
FED = FederationParams(tuple(k.public_key.format() for k in SIGNERS), 2)
ASSET = b"\x6d" * 32
WATCHMEN = [PrivateKey(bytes([0x61 + i]) * 32) for i in range(5)]
EMERGENCY = [PrivateKey(bytes([0x71 + i]) * 32) for i in range(3)]
PAK_ONLINE = [PrivateKey(bytes([0x81 + i]) * 32) for i in range(3)]
PAK_OFFLINE = [PrivateKey(bytes([0x91 + i]) * 32) for i in range(3)]
PAK = tuple(PakEntry(on.public_key.format(), off.public_key.format()) for on, off in zip(PAK_ONLINE, PAK_OFFLINE))
CLAIMER = PrivateKey(b"\x0c" * 32)
BOB = PrivateKey(b"\x0b" * 32)
T0 = 1_700_000_000


def pub(key: PrivateKey) -> bytes:
    return key.public_key.format()


def spk(key: PrivateKey) -> bytes:
    return p2wpkh_script(pub(key))


PEG = PegParams(
    watchman_keys=tuple(pub(k) for k in WATCHMEN),
    peg_threshold=3,
    emergency_keys=tuple(pub(k) for k in EMERGENCY),
    emergency_threshold=2,
    csv_delay=4032,
    parent=REGTEST,
    policy_asset=ASSET,
    pak=PAK,
)
CLAIM_SCRIPT = spk(CLAIMER)


def load(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((VECTORS / name).read_text())
    return data


# --- A mainchain to prove against ------------------------------------------------------


def grind(header: BtcBlockHeader, pow_limit: int = REGTEST.pow_limit) -> BtcBlockHeader:
    """The first nonce from 0 that meets ``header.bits`` (regtest: about two tries)."""
    nonce = 0
    while True:
        h = BtcBlockHeader(header.version, header.prev_hash, header.merkle_root, header.time, header.bits, nonce)
        if h.check_pow(pow_limit):
            return h
        nonce += 1


def filler_tx(i: int) -> BtcTransaction:
    """A distinct transaction (the first one is shaped as a coinbase)."""
    if i == 0:
        txin = BtcTxIn(b"\x00" * 32, 0xFFFFFFFF, push_int(500) + b"\x00")
    else:
        txin = BtcTxIn(bytes([0xF0, i]) * 16, i)
    return BtcTransaction(2, (txin,), (BtcTxOut(COIN + i, spk(BOB)),))


class FakeMainchain:
    """A member's bitcoind, as far as the peg asks: heights of best-chain blocks."""

    def __init__(self) -> None:
        self.heights: dict[bytes, int] = {}
        self.tip = 0
        self.calls = 0

    def confirm(self, block_hash: bytes, depth: int, height: int = 1000) -> None:
        self.heights[block_hash] = height
        self.tip = height + depth - 1

    def block_height(self, block_hash: bytes) -> int | None:
        self.calls += 1
        return self.heights.get(block_hash)

    def tip_height(self) -> int:
        return self.tip


@dataclass
class Deposit:
    """A mainchain transaction paying ``value`` to ``pays`` at output 0, in a
    block of ``n_tx`` transactions at ``position``, with its proof."""

    tx: BtcTransaction
    header: BtcBlockHeader
    txids: list[bytes]
    proof: MerkleBlock
    vout: int = 0
    view: FakeMainchain = field(default_factory=FakeMainchain)

    @property
    def prevout(self) -> OutPoint:
        return OutPoint(self.tx.txid, self.vout)

    @property
    def value(self) -> int:
        return self.tx.outputs[self.vout].value

    def stack(self, peg: PegParams = PEG, claim_script: bytes = CLAIM_SCRIPT) -> tuple[bytes, ...]:
        return build_pegin_witness(peg, claim_script, self.tx, self.proof, self.vout)


def deposit(
    pays: bytes,
    value: int = COIN,
    *,
    position: int = 2,
    n_tx: int = 5,
    depth: int = 102,
    seed: int = 0,
    witness: bool = True,
) -> Deposit:
    tx = BtcTransaction(
        2,
        (BtcTxIn(bytes([0xA0 + seed]) * 32, 1, b"", 0xFFFFFFFD),),
        (BtcTxOut(value, pays), BtcTxOut(7 * COIN, spk(BOB))),
        0,
        ((b"\x30" * 71, pub(BOB)),) if witness else (),
    )
    txs = [filler_tx(i) for i in range(n_tx)]
    txs[position] = tx
    txids = [t.txid for t in txs]
    header = grind(BtcBlockHeader(0x20000000, bytes([seed]) * 32, merkle_root(txids), T0, 0x207FFFFF, 0))
    dep = Deposit(tx, header, txids, MerkleBlock.build(header, txids, [tx.txid]))
    dep.view.confirm(header.hash, depth)
    return dep


def claim_tx(
    prevouts: Sequence[OutPoint],
    stacks: Sequence[tuple[bytes, ...]],
    values: Sequence[int],
    *,
    key: PrivateKey = CLAIMER,
    to: PrivateKey = BOB,
    fee: int = 1_000,
) -> Transaction:
    """A sidechain transaction claiming each prevout with its stack, paying
    the total less ``fee`` to ``to``; each input signed by ``key``."""
    total = sum(values)
    ins = tuple(TxIn(op, b"", 0xFFFFFFFF, None, True) for op in prevouts)
    outs = (TxOut.explicit(ASSET, total - fee, spk(to)), TxOut.explicit(ASSET, fee, b""))
    tx = Transaction(2, ins, outs)
    code = p2wpkh_script_code(hash160(pub(key)))
    wits = tuple(
        TxInWitness(
            script_witness=(sign_segwit_v0(key, tx, i, code, ConfidentialValue.explicit(v)), pub(key)),
            pegin_witness=stack,
        )
        for i, (stack, v) in enumerate(zip(stacks, values))
    )
    return tx.with_witnesses(wits)


class Sidechain:
    """A sidechain with the peg's rules, every coin from peg-ins, and the
    federation's keys to sign its blocks."""

    def __init__(self, view: FakeMainchain, peg: PegParams = PEG) -> None:
        self.params = ChainParams(
            FED, policy_asset=ASSET, parent_genesis_hash=peg.parent_genesis_hash, coinbase_maturity=3, genesis_time=T0
        )
        peg.check_chain(self.params)
        self.chain = ChainState(self.params, pegin_verifier=PegInRules(peg, view), pegout_verifier=PegOutRules(peg))
        self.time = T0

    def block(self, txs: Sequence[Transaction]) -> Block:
        block = self.chain.assemble_block(list(txs), self.time + 60)
        sigs = [sign_block_hash(SIGNERS[i], block.hash) for i in (0, 1)]
        return block.with_solution(b"\x00" + b"".join(push_data(s) for s in sigs))

    def mine(self, txs: Sequence[Transaction]) -> object:
        block = self.block(txs)
        self.time = block.header.time
        return self.chain.connect_block(Block.parse(block.serialize()), self.time)


def rules(dep: Deposit, peg: PegParams = PEG) -> PegInRules:
    return PegInRules(peg, dep.view)


# --- Fedpegscript ------------------------------------------------------------------------


def test_liquid_fedpegscript_parses_and_rebuilds() -> None:
    v = load("liquid_v1.json")
    script = bytes.fromhex(str(v["fedpegscript"]))
    assert match_liquid_watchman(script)
    shape = parse_fedpegscript(script)
    expect = v["shape"]
    assert isinstance(expect, dict)
    assert shape.peg_threshold == expect["peg_threshold"] and len(shape.watchman_keys) == expect["watchmen"]
    assert shape.csv_delay == expect["csv_delay"] == 4032
    assert (
        shape.emergency_threshold == expect["emergency_threshold"] and len(shape.emergency_keys) == expect["emergency"]
    )
    peg = PegParams.from_fedpegscript(script, parent=MAINNET)
    assert peg.fedpegscript == script
    # OP_DEPTH 12 OP_EQUAL OP_IF 11 ... 15 OP_ELSE 4032 CSV DROP 2 ... 3 OP_ENDIF CHECKMULTISIG
    assert script.startswith(bytes.fromhex("745c87635b")) and script.endswith(bytes.fromhex("5368ae"))
    assert bytes.fromhex("5f6702c00fb27552") in script


def test_fedpegscript_shapes_round_trip() -> None:
    script = PEG.fedpegscript
    assert script == liquid_fedpegscript(3, PEG.watchman_keys, 4032, 2, PEG.emergency_keys)
    assert match_liquid_watchman(script)
    assert PegParams.from_fedpegscript(script, policy_asset=ASSET, pak=PAK) == PEG
    plain = PegParams(PEG.watchman_keys, 3, policy_asset=ASSET)
    assert plain.fedpegscript == multisig_script(3, PEG.watchman_keys)
    assert not match_liquid_watchman(plain.fedpegscript)
    assert PegParams.from_fedpegscript(plain.fedpegscript, policy_asset=ASSET) == plain


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.replace(bytes.fromhex("02c00f"), bytes.fromhex("4c02c00f")),  # non-minimal CSV push
        lambda s: s[:-1],  # no OP_CHECKMULTISIG
        lambda s: s + b"\x51",  # trailing op
        lambda s: s.replace(bytes((OP_ELSE,)), b"", 1),  # no OP_ELSE
        lambda s: bytes.fromhex("7455876353") + s[5:],  # OP_DEPTH checks m+2
        lambda s: b"\x00" + s,
        lambda s: s.replace(push_data(PEG.watchman_keys[0]), push_data(b"\x04" + PEG.watchman_keys[0][1:] * 2)),
    ],
)
def test_non_canonical_fedpegscripts_refused(mutate: object) -> None:
    assert callable(mutate)
    script = mutate(PEG.fedpegscript)
    assert script != PEG.fedpegscript
    with pytest.raises(errors.ParseError):
        parse_fedpegscript(script)


def test_peg_params_refuse_unsafe_shapes() -> None:
    keys = PEG.watchman_keys
    with pytest.raises(ValueError, match="differ"):
        PegParams(keys, 2, PEG.emergency_keys, 2)  # OP_DEPTH could not tell the branches apart
    with pytest.raises(ValueError, match="csv"):
        PegParams(keys, 3, PEG.emergency_keys, 2, csv_delay=0x10000)
    with pytest.raises(ValueError):
        PegParams(keys, 6)
    with pytest.raises(ValueError, match="duplicate"):
        PegParams((keys[0], keys[0]), 1)
    with pytest.raises(ValueError, match="without emergency keys"):
        PegParams(keys, 3, (), 1)
    with pytest.raises(errors.ParseError):
        PegParams((*keys[:1], b"\x02" + b"\x00" * 32), 1)  # not on the curve
    with pytest.raises(ValueError, match="parent_genesis_hash"):
        PEG.check_chain(ChainParams(FED, policy_asset=ASSET))
    # A matching template with equal thresholds is not Elements' watchman template.
    same = liquid_fedpegscript(2, keys, 4032, 2, PEG.emergency_keys)
    assert not match_liquid_watchman(same)


# --- Addresses ----------------------------------------------------------------------------


def test_liquid_contract_and_address_match_the_real_chain() -> None:
    v = load("liquid_v1.json")
    script = bytes.fromhex(str(v["fedpegscript"]))
    peg = PegParams.from_fedpegscript(script, parent=MAINNET)
    contracts = v["contracts"]
    assert isinstance(contracts, list)
    for c in contracts:
        claim = bytes.fromhex(c["claim_script"])
        contract = peg.pegin_contract(claim)
        assert contract.hex() == c["contract"]
        # The Liquid template: wallycore skips after OP_ELSE too, so they agree.
        assert bytes(wally.elements_pegin_contract_script_from_bytes(script, claim, 0)) == contract
    addresses = v["addresses"]
    assert isinstance(addresses, list)
    for a in addresses:
        claim = bytes.fromhex(a["claim_script"])
        assert claim == p2wpkh_script(bytes.fromhex(a["claim_pubkey"]))
        # Liquid v1 pays P2SH-P2WSH; our peg pays the P2WSH inside it.
        p2sh_hash = hash160(peg.pegin_script_pubkey(claim))
        assert wally.base58_from_bytes(b"\x05" + p2sh_hash, wally.BASE58_FLAG_CHECKSUM) == a["p2sh_p2wsh_address"]


def test_address_vectors() -> None:
    v = load("addresses.json")
    cases = v["cases"]
    assert isinstance(cases, list)
    for case in cases:
        peg = PegParams.from_fedpegscript(bytes.fromhex(case["fedpegscript"]), policy_asset=ASSET)
        for c in case["claims"]:
            claim = bytes.fromhex(c["claim_script"])
            contract = peg.pegin_contract(claim)
            assert contract.hex() == c["contract"]
            assert peg.pegin_address(claim) == c["bcrt1"]
            program = sha256(contract)
            assert encode_segwit_address("bc", 0, program) == c["bc1"]
            # bech32 against wallycore, and back.
            for hrp in ("bcrt", "bc", "tb"):
                addr = encode_segwit_address(hrp, 0, program)
                assert addr == wally.addr_segwit_from_bytes(p2wsh_script(contract), hrp, 0)
                assert decode_segwit_address(hrp, addr) == (0, program)


def test_contract_agrees_with_wallycore_without_op_else() -> None:
    script = multisig_script(3, PEG.watchman_keys)
    for i in range(20):
        claim = p2wpkh_script(pub(PrivateKey(bytes([0x20 + i]) * 32))) if i % 2 else bytes([i]) * (i + 1)
        ours = calculate_contract(script, claim)
        assert ours == bytes(wally.elements_pegin_contract_script_from_bytes(script, claim, 0))
        assert ours != script and len(ours) == len(script)


def test_contract_on_a_non_template_op_else_follows_elements_not_wallycore() -> None:
    """A script with OP_ELSE that is not Elements' watchman template (equal
    thresholds): Elements tweaks every key, wallycore none after OP_ELSE."""
    v = load("addresses.json")
    case = v["non_template_op_else"]
    assert isinstance(case, dict)
    script = bytes.fromhex(case["script"])
    claim = bytes.fromhex(case["claim_script"])
    assert OP_ELSE in script and not match_liquid_watchman(script)
    ours = calculate_contract(script, claim)
    theirs = bytes(wally.elements_pegin_contract_script_from_bytes(script, claim, 0))
    assert ours.hex() == case["elements_contract"]
    assert theirs.hex() == case["wallycore_contract"]
    split = script.index(bytes((OP_ELSE,)) + push_int(4032))
    assert ours[:split] == theirs[:split]  # the watchmen: both tweak
    assert ours[split:] != theirs[split:] and theirs[split:] == script[split:]
    # On the template itself both leave the emergency keys as they are.
    liquid = calculate_contract(PEG.fedpegscript, claim)
    assert liquid == bytes(wally.elements_pegin_contract_script_from_bytes(PEG.fedpegscript, claim, 0))
    for key in PEG.emergency_keys:
        assert push_data(key) in liquid
    for key in PEG.watchman_keys:
        assert push_data(key) not in liquid and push_data(tweak_pubkey(key, claim)) in liquid


def test_tweaked_private_keys_match_tweaked_public_keys() -> None:
    for i, key in enumerate(WATCHMEN):
        claim = p2wpkh_script(pub(PrivateKey(bytes([0x30 + i]) * 32)))
        tweaked = tweak_private_key(key, claim)
        tweak = int.from_bytes(pegin_tweak(pub(key), claim), "big")
        assert int.from_bytes(tweaked.secret, "big") == (int.from_bytes(key.secret, "big") + tweak) % ORDER
        assert pub(tweaked) == tweak_pubkey(pub(key), claim)
        assert pub(tweaked) in PEG.pegin_contract(claim)
        # And it signs for the tweaked key.
        digest = sha256(b"spend of a peg-in output")
        assert PublicKey(tweak_pubkey(pub(key), claim)).verify(tweaked.sign(digest, hasher=None), digest, hasher=None)
    # P + t·G computed the other way: (P + tG) - P == tG.
    p = pub(WATCHMEN[0])
    t = pegin_tweak(p, CLAIM_SCRIPT)
    neg_p = PublicKey(p).multiply((ORDER - 1).to_bytes(32, "big"))
    assert PublicKey.combine_keys([PublicKey(tweak_pubkey(p, CLAIM_SCRIPT)), neg_p]) == PrivateKey(t).public_key


def test_wrong_network_addresses_refused() -> None:
    addr = PEG.pegin_address(CLAIM_SCRIPT)
    assert addr.startswith("bcrt1q")
    assert decode_segwit_address("bcrt", addr)[0] == 0
    for hrp in ("bc", "tb"):
        with pytest.raises(errors.ParseError):
            decode_segwit_address(hrp, addr)
    mainnet = PegParams(PEG.watchman_keys, 3, parent=MAINNET)
    assert mainnet.pegin_address(CLAIM_SCRIPT).startswith("bc1q")
    assert PegParams(PEG.watchman_keys, 3, parent=TESTNET).pegin_address(CLAIM_SCRIPT).startswith("tb1q")
    with pytest.raises(errors.ParseError):
        decode_segwit_address("bcrt", addr[:-1] + ("q" if addr[-1] != "q" else "p"))  # checksum


# --- Elements' own peg-in, parsed --------------------------------------------------------


def test_elements_regtest_pegin_parses_item_by_item() -> None:
    v = load("elements_regtest_pegin.json")
    claim_tx = Transaction.parse(bytes.fromhex(str(v["claim_tx_signed"])))
    txin = claim_tx.inputs[0]
    assert txin.is_pegin
    stack = claim_tx.input_witnesses[0].pegin_witness
    w = PegInWitness.parse(stack)
    assert w.to_stack() == stack
    assert w.value == v["value"] == COIN
    assert hash_to_hex(w.asset) == v["pegged_asset_display"]
    assert hash_to_hex(w.genesis_hash) == v["parent_genesis_display"] and w.genesis_hash == REGTEST.genesis_hash
    assert w.claim_script == p2wpkh_script(bytes.fromhex(str(v["claim_pubkey"])))
    # The transaction went in stripped; with or without witness, one txid.
    full = BtcTransaction.parse(bytes.fromhex(str(v["mainchain_tx_with_witness"])))
    assert full.has_witness and full.txid == w.tx.txid and stack[4] == full.serialize_without_witness()
    assert w.tx.txid_hex == v["mainchain_txid_display"] and txin.prevout == OutPoint(w.tx.txid, 0)
    assert w.proof.serialize().hex() == v["txout_proof"]
    found = w.proof.extract()
    assert found.matches == ((w.tx.txid, v["proof_position"]),)
    assert w.proof.header.check_pow(REGTEST.pow_limit)
    # Its fedpegscript OP_TRUE has no key to tweak; elementsd 0.18 paid
    # P2SH-P2WSH of the contract, which is what our P2WSH sits inside.
    contract = calculate_contract(bytes.fromhex(str(v["fedpegscript"])), w.claim_script)
    assert contract == b"\x51"
    p2sh = b"\xa9\x14" + hash160(p2wsh_script(contract)) + b"\x87"
    assert w.tx.outputs[int(str(v["vout"]))].script_pubkey == p2sh
    assert w.tx.outputs[0].value == w.value


# --- Claims ------------------------------------------------------------------------------


def test_pegin_claim_accepted_and_minted() -> None:
    dep = deposit(PEG.pegin_script_pubkey(CLAIM_SCRIPT))
    side = Sidechain(dep.view)
    tx = claim_tx([dep.prevout], [dep.stack()], [dep.value])
    assert side.chain.validate_transaction(tx) == 1_000
    side.mine([tx])
    assert side.chain.is_pegin_claimed(dep.prevout)
    coin = side.chain.utxo(OutPoint(tx.txid, 0))
    assert coin is not None and coin.output.value.amount == COIN - 1_000
    # What the verifier returns: the claim script's explicit output.
    claim = rules(dep).check_claim(dep.prevout, dep.stack())
    assert claim.output(ASSET) == TxOut.explicit(ASSET, COIN, CLAIM_SCRIPT)
    assert claim.required_depth == 102 and claim.tx_position == 2 and claim.block_hash == dep.header.hash
    assert rules(dep).check_depth(claim) == 102


def test_pegin_claim_vector() -> None:
    """The claim kept as data: its witness, prevout and mainchain view."""
    v = load("pegin_claim.json")
    peg = PegParams.from_fedpegscript(bytes.fromhex(str(v["fedpegscript"])), policy_asset=ASSET)
    assert peg.pegin_address(bytes.fromhex(str(v["claim_script"]))) == v["pegin_address"]
    items = v["pegin_witness"]
    assert isinstance(items, list)
    stack = tuple(bytes.fromhex(x) for x in items)
    prevout = OutPoint(bytes.fromhex(str(v["prevout_txid"])), int(str(v["prevout_index"])))
    height, tip = int(str(v["block_height"])), int(str(v["tip_height"]))
    view = FakeMainchain()
    view.heights[bytes.fromhex(str(v["block_hash"]))] = height
    view.tip = tip
    claim = PegInRules(peg, view).check_claim(prevout, stack)
    assert claim.value == v["value"]
    assert PegInRules(peg, view).check_depth(claim) == tip - height + 1 == peg.pegin_min_depth
    view.tip -= 1
    with pytest.raises(errors.PegInInsufficientDepth):
        PegInRules(peg, view).check_depth(claim)


def test_mainchain_tx_with_its_witness_is_accepted_too() -> None:
    dep = deposit(PEG.pegin_script_pubkey(CLAIM_SCRIPT))
    stack = dep.stack()
    with_witness = (*stack[:4], dep.tx.serialize(), stack[5])
    assert with_witness[4] != stack[4]
    assert rules(dep).check_claim(dep.prevout, with_witness).value == COIN


def test_depth_boundary_and_coinbase_maturity() -> None:
    dep = deposit(PEG.pegin_script_pubkey(CLAIM_SCRIPT), depth=102)
    rules(dep).verify_pegin(claim_tx([dep.prevout], [dep.stack()], [dep.value]), 0, 1)
    dep.view.tip -= 1  # 101 confirmations
    with pytest.raises(errors.PegInInsufficientDepth, match="pegin-no-witness, Needs more confirmations"):
        rules(dep).verify_pegin(claim_tx([dep.prevout], [dep.stack()], [dep.value]), 0, 1)
    # A coinbase output (position 0) waits for maturity even with a small minimum.
    shallow = PegParams(PEG.watchman_keys, 3, PEG.emergency_keys, 2, pegin_min_depth=6, policy_asset=ASSET)
    cb = deposit(shallow.pegin_script_pubkey(CLAIM_SCRIPT), position=0, depth=99)
    claim = PegInRules(shallow, cb.view).check_claim(cb.prevout, cb.stack(shallow))
    assert claim.required_depth == COINBASE_MATURITY
    with pytest.raises(errors.PegInInsufficientDepth):
        PegInRules(shallow, cb.view).check_depth(claim)
    cb.view.tip += 1
    assert PegInRules(shallow, cb.view).check_depth(claim) == 100
    other = deposit(shallow.pegin_script_pubkey(CLAIM_SCRIPT), position=3, depth=6)
    other_claim = PegInRules(shallow, other.view).check_claim(other.prevout, other.stack(shallow))
    assert other_claim.required_depth == 6
    assert PegInRules(shallow, other.view).check_depth(other_claim) == 6


def _replace(stack: tuple[bytes, ...], i: int, item: bytes) -> tuple[bytes, ...]:
    return (*stack[:i], item, *stack[i + 1 :])


def _tamper_hash(proof: MerkleBlock) -> bytes:
    tree = proof.tree
    bad = PartialMerkleTree(tree.n_transactions, (tree.hashes[0][:-1] + b"\x00", *tree.hashes[1:]), tree.flags)
    return MerkleBlock(proof.header, tree=bad).serialize()


def _pow_fail(dep: Deposit) -> bytes:
    # A header whose hash misses its target: search nonces for one that fails.
    h = dep.header
    nonce = 0
    while BtcBlockHeader(h.version, h.prev_hash, h.merkle_root, h.time, h.bits, nonce).check_pow(REGTEST.pow_limit):
        nonce += 1
    bad = BtcBlockHeader(h.version, h.prev_hash, h.merkle_root, h.time, h.bits, nonce)
    return MerkleBlock(bad, dep.proof.tree).serialize()


def _easier_than_limit(dep: Deposit) -> bytes:
    h = dep.header
    bad = grind(BtcBlockHeader(h.version, h.prev_hash, h.merkle_root, h.time, 0x2100FFFF, 0), 2**256 - 1)
    return MerkleBlock(bad, dep.proof.tree).serialize()


GOOD = PEG.pegin_script_pubkey(CLAIM_SCRIPT)
OTHER_CLAIM = spk(BOB)

# name -> (error, reason fragment, how to build (deposit, prevout, stack))
REJECTIONS: dict[str, tuple[type[errors.PegInError], str]] = {
    "too_few_confirmations": (errors.PegInInsufficientDepth, "Needs more confirmations"),
    "block_not_in_best_chain": (errors.PegInBlockNotInBestChain, "not in the best chain"),
    "wrong_claim_script": (errors.ClaimScriptMismatch, "Peg-in tx is invalid"),
    "value_below_minimum": (errors.PegInValueTooLow, "below the peg's minimum"),
    "value_mismatch": (errors.PegInValueMismatch, "Peg-in tx is invalid"),
    "wrong_genesis": (errors.PegInWrongGenesis, "Parent genesis block mismatch"),
    "wrong_asset": (errors.PegInWrongAsset, "not the pegged asset"),
    "tampered_proof_hash": (errors.PegInBadProof, "Could not extract block and tx from merkleblock"),
    "tampered_proof_root": (errors.PegInBadProof, "root does not match"),
    "proof_matches_two": (errors.PegInBadProof, "matches 2 transactions"),
    "proof_of_work_missed": (errors.PegInBadProof, "Parent proof of work is invalid"),
    "target_easier_than_limit": (errors.PegInBadProof, "Parent proof of work is invalid"),
    "tx_not_in_proof": (errors.PegInTxNotInProof, "Merkle proof and txid mismatch"),
    "other_tx_bytes": (errors.PegInTxMismatch, "Peg-in tx is invalid"),
    "output_index_out_of_range": (errors.PegInTxMismatch, "no output 5"),
    "pays_untweaked_fedpegscript": (errors.NotPegInAddress, "no peg-in address"),
    "pays_p2wpkh": (errors.NotPegInAddress, "no peg-in address"),
    "pays_p2sh_p2wsh": (errors.NotPegInAddress, "no peg-in address"),
    "five_items": (errors.BadPegInWitness, "Not enough stack items"),
    "value_nine_bytes": (errors.BadPegInWitness, "Could not deserialize value"),
    "value_negative": (errors.BadPegInWitness, "Value was not in valid value range"),
    "value_above_max_money": (errors.BadPegInWitness, "Value was not in valid value range"),
    "claim_script_too_large": (errors.BadPegInWitness, "Claim script is too large"),
    "garbage_tx": (errors.BadPegInWitness, "Peg-in tx is invalid"),
    "garbage_proof": (errors.PegInBadProof, "Could not extract"),
}


def _rejected_case(name: str) -> tuple[Deposit, OutPoint, tuple[bytes, ...]]:
    dep = deposit(GOOD)
    stack, prevout = dep.stack(), dep.prevout
    if name == "too_few_confirmations":
        dep.view.tip -= 1
    elif name == "block_not_in_best_chain":
        dep.view.heights.clear()  # reorganized away, or never seen
    elif name == "wrong_claim_script":
        # The address was made for CLAIM_SCRIPT; the witness names another.
        stack = dep.stack(claim_script=OTHER_CLAIM)
    elif name == "value_below_minimum":
        dep = deposit(GOOD, value=PEG.min_pegin_value - 1)
        stack, prevout = dep.stack(), dep.prevout
    elif name == "value_mismatch":
        stack = _replace(stack, 0, (COIN + 1).to_bytes(8, "little"))
    elif name == "wrong_genesis":
        stack = _replace(stack, 2, MAINNET.genesis_hash)
    elif name == "wrong_asset":
        stack = _replace(stack, 1, b"\x99" * 32)
    elif name == "tampered_proof_hash":
        stack = _replace(stack, 5, _tamper_hash(dep.proof))
    elif name == "tampered_proof_root":
        h = dep.header
        other = grind(BtcBlockHeader(h.version, h.prev_hash, b"\x13" * 32, h.time, h.bits, 0))
        stack = _replace(stack, 5, MerkleBlock(other, dep.proof.tree).serialize())
    elif name == "proof_matches_two":
        stack = _replace(stack, 5, MerkleBlock.build(dep.header, dep.txids, dep.txids[1:3]).serialize())
    elif name == "proof_of_work_missed":
        stack = _replace(stack, 5, _pow_fail(dep))
    elif name == "target_easier_than_limit":
        stack = _replace(stack, 5, _easier_than_limit(dep))
    elif name == "tx_not_in_proof":
        # A valid proof of another transaction of the same block.
        stack = _replace(stack, 5, MerkleBlock.build(dep.header, dep.txids, [dep.txids[3]]).serialize())
    elif name == "other_tx_bytes":
        stack = _replace(stack, 4, filler_tx(3).serialize())
    elif name == "output_index_out_of_range":
        prevout = OutPoint(dep.tx.txid, 5)
    elif name in ("pays_untweaked_fedpegscript", "pays_p2wpkh", "pays_p2sh_p2wsh"):
        pays = {
            "pays_untweaked_fedpegscript": PEG.fedpeg_program,
            "pays_p2wpkh": spk(CLAIMER),
            "pays_p2sh_p2wsh": b"\xa9\x14" + hash160(GOOD) + b"\x87",  # Liquid v1's nested form
        }[name]
        dep = deposit(pays)
        stack, prevout = dep.stack(), dep.prevout
    elif name == "five_items":
        stack = stack[:5]
    elif name == "value_nine_bytes":
        stack = _replace(stack, 0, COIN.to_bytes(9, "little"))
    elif name == "value_negative":
        stack = _replace(stack, 0, (-1).to_bytes(8, "little", signed=True))
    elif name == "value_above_max_money":
        stack = _replace(stack, 0, (21_000_000 * COIN + 1).to_bytes(8, "little"))
    elif name == "claim_script_too_large":
        stack = _replace(stack, 3, b"\x51" * 101)
    elif name == "garbage_tx":
        stack = _replace(stack, 4, stack[4][:-1])
    elif name == "garbage_proof":
        stack = _replace(stack, 5, stack[5] + b"\x00")
    else:  # pragma: no cover
        raise AssertionError(name)
    return dep, prevout, stack


@pytest.mark.parametrize("name", sorted(REJECTIONS))
def test_pegin_rejections(name: str) -> None:
    error, reason = REJECTIONS[name]
    dep, prevout, stack = _rejected_case(name)
    tx = claim_tx([prevout], [stack], [dep.value])
    with pytest.raises(error, match=reason) as info:
        rules(dep).verify_pegin(tx, 0, 1)
    assert type(info.value) is error  # the rule itself, not a relative
    assert "pegin-no-witness" in str(info.value) or error is errors.BadPegInWitness
    # The chain state lets the same error through unchanged.
    side = Sidechain(dep.view)
    with pytest.raises(error):
        side.chain.validate_transaction(tx)


class CountingMainchain(FakeMainchain):
    """A view that also knows each block's transaction count (Elements asks
    bitcoind for it)."""

    def __init__(self, counts: dict[bytes, int]) -> None:
        super().__init__()
        self.counts = counts

    def block_tx_count(self, block_hash: bytes) -> int | None:
        return self.counts.get(block_hash)


def test_proof_transaction_count_checked_when_the_view_knows_it() -> None:
    dep = deposit(GOOD)
    view = CountingMainchain({dep.header.hash: len(dep.txids)})
    view.heights, view.tip = dep.view.heights, dep.view.tip
    tx = claim_tx([dep.prevout], [dep.stack()], [dep.value])
    PegInRules(PEG, view).verify_pegin(tx, 0, 1)
    view.counts[dep.header.hash] += 1
    with pytest.raises(errors.PegInBadProof, match="counts 5 transactions, the block has 6"):
        PegInRules(PEG, view).verify_pegin(tx, 0, 1)
    del view.counts[dep.header.hash]  # the view does not know: no check
    PegInRules(PEG, view).verify_pegin(tx, 0, 1)


def test_verify_pegin_on_a_plain_input_refused() -> None:
    dep = deposit(GOOD)
    tx = claim_tx([dep.prevout], [dep.stack()], [dep.value])
    plain = Transaction(2, (TxIn(dep.prevout),), tx.outputs)
    with pytest.raises(errors.BadPegInWitness):
        rules(dep).verify_pegin(plain, 0, 1)


# --- Double claims (the chain state's rules, with the real peg) ----------------------------


def _two_deposits() -> tuple[Deposit, FakeMainchain]:
    dep = deposit(GOOD)
    return dep, dep.view


def test_same_pegin_twice_in_one_tx_is_a_duplicate_input() -> None:
    dep, view = _two_deposits()
    side = Sidechain(view)
    tx = claim_tx([dep.prevout, dep.prevout], [dep.stack(), dep.stack()], [dep.value, dep.value])
    with pytest.raises(errors.DuplicateInput):
        side.chain.validate_transaction(tx)
    with pytest.raises(errors.DuplicateInput):
        side.chain.check_block(side.block([tx]), side.time + 60)


def test_same_pegin_in_two_txs_of_one_block_is_bad_txns_double_pegin() -> None:
    dep, view = _two_deposits()
    side = Sidechain(view)
    first = claim_tx([dep.prevout], [dep.stack()], [dep.value])
    second = claim_tx([dep.prevout], [dep.stack()], [dep.value], to=CLAIMER)
    assert first.txid != second.txid
    side.chain.validate_transaction(first)
    side.chain.validate_transaction(second)  # each alone is fine
    with pytest.raises(errors.BadTxnsDoublePegin, match="bad-txns-double-pegin"):
        side.chain.check_block(side.block([first, second]), side.time + 60)
    assert not side.chain.is_pegin_claimed(dep.prevout)  # the failed block changed nothing


def test_same_pegin_after_an_earlier_claim_is_pegin_already_claimed() -> None:
    dep, view = _two_deposits()
    side = Sidechain(view)
    first = claim_tx([dep.prevout], [dep.stack()], [dep.value])
    undo = side.mine([first])
    second = claim_tx([dep.prevout], [dep.stack()], [dep.value], to=CLAIMER)
    with pytest.raises(errors.PegInAlreadyClaimed, match="pegin-already-claimed") as info:
        side.chain.validate_transaction(second)
    assert type(info.value) is errors.PegInAlreadyClaimed
    with pytest.raises(errors.PegInAlreadyClaimed) as info:
        side.chain.check_block(side.block([second]), side.time + 60)
    assert type(info.value) is errors.PegInAlreadyClaimed
    # Rolling the claiming block back frees the mainchain output again.
    side.chain.disconnect_block(undo)  # type: ignore[arg-type]
    assert side.chain.validate_transaction(second) == 1_000


def test_claimed_coins_need_the_claim_scripts_signature() -> None:
    dep, view = _two_deposits()
    side = Sidechain(view)
    forged = claim_tx([dep.prevout], [dep.stack()], [dep.value], key=BOB)
    with pytest.raises(errors.ScriptVerifyError):
        side.chain.validate_transaction(forged)  # Bob's key does not hash to the claim script
    # Two different peg-ins in one transaction are fine.
    other = deposit(GOOD, value=2 * COIN, seed=1)
    view.heights.update(other.view.heights)
    both = claim_tx([dep.prevout, other.prevout], [dep.stack(), other.stack()], [dep.value, other.value])
    assert side.chain.validate_transaction(both) == 1_000


# --- The mainchain formats against independent implementations ---------------------------


def test_bitcoin_formats_match_python_bitcoinlib() -> None:
    """txid, wtxid-free serialization and header hash as python-bitcoinlib
    computes them (pure Python, no network parameters involved)."""
    from bitcoin.core import CBlockHeader, CTransaction

    v = load("elements_regtest_pegin.json")
    raw = bytes.fromhex(str(v["mainchain_tx_with_witness"]))
    theirs = CTransaction.deserialize(raw)
    ours = BtcTransaction.parse(raw)
    assert theirs.GetTxid() == ours.txid and theirs.serialize() == ours.serialize() == raw
    assert theirs.serialize(params={"include_witness": False}) == ours.serialize_without_witness()
    dep = deposit(GOOD)
    assert CTransaction.deserialize(dep.tx.serialize()).GetTxid() == dep.tx.txid
    header = CBlockHeader.deserialize(dep.header.serialize())
    assert header.GetHash() == dep.header.hash and header.hashMerkleRoot == merkle_root(dep.txids)
    proof = MerkleBlock.parse(bytes.fromhex(str(v["txout_proof"])))
    assert CBlockHeader.deserialize(proof.header.serialize()).GetHash() == proof.header.hash


def test_partial_merkle_trees_round_trip() -> None:
    """Bitcoin Core's build and extract are inverse for every match set tried."""
    import random

    rnd = random.Random(0xB1737)
    for n in [*range(1, 18), 31, 32, 33, 100, 255]:
        txids = [sha256(n.to_bytes(4, "little") + i.to_bytes(4, "little")) for i in range(n)]
        root = merkle_root(txids)
        for _ in range(4):
            match = [rnd.random() < 0.2 for _ in range(n)]
            tree = PartialMerkleTree.build(txids, match)
            found = tree.extract_matches()
            assert found.root == root
            assert found.matches == tuple((t, i) for i, t in enumerate(txids) if match[i])
            # A second hash more than there should be, or an extra flag byte, is refused.
            with pytest.raises(errors.ParseError):
                PartialMerkleTree(n, (*tree.hashes, b"\x00" * 32), tree.flags).extract_matches()
            with pytest.raises(errors.ParseError):
                PartialMerkleTree(n, tree.hashes, tree.flags + b"\x00").extract_matches()
    # CVE-2012-2459: a block whose last transaction is duplicated has the same
    # root; a proof over the duplicated list is refused.
    txids = [sha256(bytes([i])) for i in range(3)]
    dup = PartialMerkleTree.build([*txids, txids[2]], [False, False, True, True])
    with pytest.raises(errors.ParseError, match="identical"):
        dup.extract_matches()
