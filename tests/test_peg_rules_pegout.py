"""The peg-out side of the peg: PAK-authorized peg-outs (consensus.peg).

* An exchange in the PAK list pegs out to P2PKH, P2WPKH and P2SH-P2WPKH of
  its peg-out key, with libsecp256k1-zkp's whitelist proof (made through
  wallycore, verified through our binding); the scripts equal wallycore's
  ``elements_pegout_script_from_bytes``.
* Refused, each by name: garbage destinations and destinations of another
  key, another parent chain, an exchange not in the list, a proof replayed
  onto another key, missing, truncated, corrupted or trailing pushes, an
  empty PAK list, a blinded peg-out.
* Through ChainState: the hook is off by default (a peg-out is checked by
  shape only, as before) and refuses in transactions and blocks when on.
* The same cases kept as data in tests/vectors/peg/pegouts.json.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import wallycore as wally
from coincurve import PrivateKey

from consensus import errors
from consensus.chainstate import COIN, ChainState
from consensus.hashes import hash160
from consensus.mainchain import MAINNET, REGTEST, TESTNET, MainchainNetwork
from consensus.params import ChainParams
from consensus.peg import (
    PakEntry,
    PakList,
    PegOutRules,
    PegParams,
    is_payable_destination,
    pak_destinations,
    pak_pegout_script,
    summed_secret,
    whitelist_proof,
)
from consensus.standard import (
    p2wpkh_script,
    p2wpkh_script_code,
    p2wsh_script,
    parse_pegout,
    pegout_script,
    sign_segwit_v0,
)
from consensus.transaction import ConfidentialValue, OutPoint, Transaction, TxIn, TxInWitness, TxOut
from tests.test_peg_rules import ASSET, FED, PAK, PAK_OFFLINE, PAK_ONLINE, PEG, SIGNERS, T0, pub

VECTORS = Path(__file__).parent / "vectors" / "peg"
ALICE = PrivateKey(b"\x0a" * 32)
EXCHANGE = 1  # this exchange's entry in the PAK list
PEGOUT_KEY = PrivateKey(b"\xa1" * 32)
OTHER_KEY = PrivateKey(b"\xa2" * 32)
OUTSIDER_ONLINE = PrivateKey(b"\xb1" * 32)
OUTSIDER_OFFLINE = PrivateKey(b"\xb2" * 32)
OUTSIDER = PakEntry(pub(OUTSIDER_ONLINE), pub(OUTSIDER_OFFLINE))
GENESIS = REGTEST.genesis_hash
KINDS = ("p2pkh", "p2wpkh", "p2sh_p2wpkh")


SECRETS = {e: (on, off) for e, on, off in zip(PAK, PAK_ONLINE, PAK_OFFLINE)}
SECRETS[OUTSIDER] = (OUTSIDER_ONLINE, OUTSIDER_OFFLINE)


def proof_for(key: PrivateKey = PEGOUT_KEY, entries: tuple[PakEntry, ...] = PAK, index: int = EXCHANGE) -> bytes:
    """The whitelist proof entry ``index``'s holder makes for ``key``, over ``entries``."""
    online, offline = SECRETS[entries[index]]
    return whitelist_proof(entries, index, pub(key), online, summed_secret(offline, key))


def destination(kind: str, key: PrivateKey = PEGOUT_KEY) -> bytes:
    return dict(zip(KINDS, pak_destinations(pub(key))))[kind]


def pak_script(kind: str = "p2wpkh", *, genesis: bytes = GENESIS, key: PrivateKey = PEGOUT_KEY) -> bytes:
    return pak_pegout_script(genesis, destination(kind, key), pub(key), proof_for(key))


def pegout_out(script: bytes, amount: int = COIN) -> TxOut:
    return TxOut.explicit(ASSET, amount, script)


def check(script: bytes, peg: PegParams = PEG) -> object:
    return PegOutRules(peg).check_output(pegout_out(script))


# --- Accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_pak_pegout_accepted_for_each_destination_kind(kind: str) -> None:
    script = pak_script(kind)
    proof = proof_for()
    assert len(proof) == 1 + 32 * (1 + len(PAK))
    # Our builder is wallycore's.
    wallys = wally.elements_pegout_script_from_bytes(GENESIS, destination(kind), pub(PEGOUT_KEY), proof, 0)
    assert bytes(wallys) == script
    pegout = check(script)
    assert pegout == parse_pegout(script)
    assert pegout is not None and pegout.parent_script == destination(kind)


def test_pak_destinations_match_wallycore() -> None:
    key = pub(PEGOUT_KEY)
    p2pkh, p2wpkh, p2sh = pak_destinations(key)
    assert p2pkh == bytes(wally.scriptpubkey_p2pkh_from_bytes(key, wally.WALLY_SCRIPT_HASH160))
    assert p2wpkh == bytes(wally.witness_program_from_bytes(key, wally.WALLY_SCRIPT_HASH160)) == p2wpkh_script(key)
    assert p2sh == bytes(wally.scriptpubkey_p2sh_from_bytes(p2wpkh, wally.WALLY_SCRIPT_HASH160))
    assert all(is_payable_destination(d) for d in (p2pkh, p2wpkh, p2sh))


def test_every_exchange_in_the_list_can_peg_out() -> None:
    rules = PegOutRules(PEG)
    for i in range(len(PAK)):
        key = PrivateKey(bytes([0xC0 + i]) * 32)
        script = pak_pegout_script(GENESIS, destination("p2wpkh", key), pub(key), proof_for(key, index=i))
        assert rules.check_output(pegout_out(script)) is not None


def test_pak_entry_extension_form() -> None:
    entry = PAK[0]
    assert entry.extension == entry.offline + entry.online  # Elements: offline key first
    assert PakEntry.from_extension(entry.extension) == entry
    with pytest.raises(errors.ParseError):
        PakEntry.from_extension(entry.extension[:-1])


# --- Refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dest",
    [
        b"",
        b"\x00",
        b"\xff" * 30,
        p2wsh_script(b"\x51"),
        b"\x51\x20" + b"\x11" * 32,  # P2TR: payable, but not of a single key
        bytes.fromhex("76a914") + b"\x00" * 20 + bytes.fromhex("88ac"),  # P2PKH of no key
        b"\x6a",
    ],
    ids=["empty", "op0", "junk", "p2wsh", "p2tr", "p2pkh-zero", "op-return"],
)
def test_garbage_destinations_refused(dest: bytes) -> None:
    script = pak_pegout_script(GENESIS, dest, pub(PEGOUT_KEY), proof_for())
    with pytest.raises(errors.BadPegOutDestination, match="invalid-pegout-proof"):
        check(script)


@pytest.mark.parametrize("kind", KINDS)
def test_destination_of_another_key_refused(kind: str) -> None:
    script = pak_pegout_script(GENESIS, destination(kind, OTHER_KEY), pub(PEGOUT_KEY), proof_for())
    with pytest.raises(errors.BadPegOutDestination):
        check(script)


@pytest.mark.parametrize("network", [MAINNET, TESTNET], ids=["mainnet", "testnet"])
def test_wrong_parent_chain_refused(network: MainchainNetwork) -> None:
    genesis = network.genesis_hash
    with pytest.raises(errors.WrongParentChain, match="parent genesis"):
        check(pak_script(genesis=genesis))
    # The same peg-out is fine for a peg whose parent that is.
    assert check(pak_script(genesis=genesis), replace(PEG, parent=network)) is not None


def test_exchange_not_in_the_pak_list_refused() -> None:
    key = PEGOUT_KEY
    # Signs over a list with itself in place of exchange 2: same size, other keys.
    forged_list = (PAK[0], PAK[1], OUTSIDER)
    proof = proof_for(key, forged_list, 2)
    assert PakList(forged_list).verify(proof, pub(key))  # valid for the list it claims
    with pytest.raises(errors.UnauthorizedPegOut, match="not in it"):
        check(pak_pegout_script(GENESIS, destination("p2wpkh", key), pub(key), proof))
    # Signs over the real list plus itself: wrong number of keys.
    longer = (*PAK, OUTSIDER)
    proof = proof_for(key, longer, 3)
    with pytest.raises(errors.UnauthorizedPegOut):
        check(pak_pegout_script(GENESIS, destination("p2wpkh", key), pub(key), proof))


def test_proof_replayed_onto_another_key_refused() -> None:
    proof = proof_for(PEGOUT_KEY)
    script = pak_pegout_script(GENESIS, destination("p2wpkh", OTHER_KEY), pub(OTHER_KEY), proof)
    with pytest.raises(errors.UnauthorizedPegOut):
        check(script)


def _pushes(*extra: bytes) -> bytes:
    return pegout_script(GENESIS, destination("p2wpkh"), extra)


@pytest.mark.parametrize(
    "script",
    [
        _pushes(),
        _pushes(pub(PEGOUT_KEY)),
        _pushes(pub(PEGOUT_KEY), b""),
        _pushes(pub(PEGOUT_KEY), proof_for()[:-1]),
        _pushes(pub(PEGOUT_KEY), proof_for()[:40] + bytes([proof_for()[40] ^ 1]) + proof_for()[41:]),
        _pushes(pub(PEGOUT_KEY), b"\xff" * 129),
        _pushes(pub(PEGOUT_KEY), proof_for(), b"\x01"),
        _pushes(pub(PEGOUT_KEY)[:32]),
    ],
    ids=["no-pak", "no-proof", "empty-proof", "truncated", "corrupted", "overflowing", "trailing", "short-key"],
)
def test_malformed_pak_pushes_refused(script: bytes) -> None:
    with pytest.raises(errors.UnauthorizedPegOut, match="invalid-pegout-proof"):
        check(script)


def test_pubkey_off_the_curve_refused() -> None:
    bad = b"\x02" + b"\x00" * 32
    script = pak_pegout_script(GENESIS, p2wpkh_script(bad), bad, proof_for())
    with pytest.raises(errors.UnauthorizedPegOut):
        check(script)


def test_empty_pak_list_refuses_every_pegout() -> None:
    with pytest.raises(errors.UnauthorizedPegOut, match="empty"):
        check(pak_script(), replace(PEG, pak=()))


def test_blinded_pegout_refused() -> None:
    script = pak_script()
    blinded = TxOut(pegout_out(script).asset, ConfidentialValue(b"\x08" + b"\x11" * 32), script_pubkey=script)
    with pytest.raises(errors.BlindedPegOut):
        PegOutRules(PEG).check_output(blinded)


def test_without_pak_any_payable_destination() -> None:
    peg = replace(PEG, enforce_pak=False, pak=())
    for dest in (p2wsh_script(b"\x51"), b"\x51\x20" + b"\x11" * 32, *pak_destinations(pub(OTHER_KEY))):
        assert check(pegout_script(GENESIS, dest), peg) is not None
    for dest in (b"", b"\xff" * 30, b"\x6a"):
        with pytest.raises(errors.BadPegOutDestination):
            check(pegout_script(GENESIS, dest), peg)
    with pytest.raises(errors.WrongParentChain):
        check(pegout_script(MAINNET.genesis_hash, p2wsh_script(b"\x51")), peg)


def test_non_pegout_outputs_are_not_pegouts() -> None:
    rules = PegOutRules(PEG)
    assert rules.check_output(pegout_out(p2wpkh_script(pub(ALICE)))) is None
    assert rules.check_output(pegout_out(b"\x6a\x04abcd")) is None


# --- Vectors -------------------------------------------------------------------------------


def test_pegout_vectors() -> None:
    v = json.loads((VECTORS / "pegouts.json").read_text())
    entries = tuple(PakEntry(bytes.fromhex(e["online"]), bytes.fromhex(e["offline"])) for e in v["pak"])
    assert entries == PAK
    peg = replace(PEG, pak=entries)
    rules = PegOutRules(peg)
    for case in v["valid"]:
        script = bytes.fromhex(case["script"])
        pegout = rules.check_output(pegout_out(script))
        assert pegout is not None and pegout.parent_script.hex() == case["destination"], case["name"]
        parts = (GENESIS, pegout.parent_script, *pegout.extra)
        assert bytes(wally.elements_pegout_script_from_bytes(*parts, 0)) == script
    for case in v["invalid"]:
        with pytest.raises(getattr(errors, case["error"])):
            rules.check_output(pegout_out(bytes.fromhex(case["script"])))


# --- Through the chain state ---------------------------------------------------------------


class Chain:
    def __init__(self, pegout: PegOutRules | None) -> None:
        params = ChainParams(
            FED,
            policy_asset=ASSET,
            parent_genesis_hash=GENESIS,
            initial_free_coins=50 * COIN,
            initial_free_coins_script=p2wpkh_script(pub(ALICE)),
            genesis_time=T0,
        )
        self.chain = ChainState(params, pegout_verifier=pegout)

    def pegout_tx(self, script: bytes, amount: int = COIN) -> Transaction:
        coin = OutPoint(self.chain.genesis.transactions[0].txid, 0)
        free = 50 * COIN
        outs = (
            pegout_out(script, amount),
            TxOut.explicit(ASSET, free - amount - 1_000, p2wpkh_script(pub(ALICE))),
            TxOut.explicit(ASSET, 1_000, b""),
        )
        tx = Transaction(2, (TxIn(coin),), outs)
        code = p2wpkh_script_code(hash160(pub(ALICE)))
        sig = sign_segwit_v0(ALICE, tx, 0, code, ConfidentialValue.explicit(free))
        return tx.with_witnesses((TxInWitness(script_witness=(sig, pub(ALICE))),))

    def block_ok(self, tx: Transaction) -> None:
        from consensus.header import sign_block_hash
        from consensus.script import push_data

        block = self.chain.assemble_block([tx], T0 + 60)
        sigs = [sign_block_hash(SIGNERS[i], block.hash) for i in (0, 1)]
        self.chain.check_block(block.with_solution(b"\x00" + b"".join(push_data(s) for s in sigs)), T0 + 60)


@pytest.mark.parametrize("kind", KINDS)
def test_chainstate_accepts_authorized_pegouts(kind: str) -> None:
    c = Chain(PegOutRules(PEG))
    tx = c.pegout_tx(pak_script(kind))
    assert c.chain.validate_transaction(tx) == 1_000
    c.block_ok(tx)
    assert PegOutRules(PEG).check_transaction(tx) == [(0, parse_pegout(pak_script(kind)))]


def test_chainstate_refuses_unauthorized_pegouts_only_with_the_hook() -> None:
    forged = proof_for(PEGOUT_KEY, (PAK[0], PAK[1], OUTSIDER), 2)
    outsider = pak_pegout_script(GENESIS, destination("p2wpkh"), pub(PEGOUT_KEY), forged)
    wrong_chain = pak_script(genesis=MAINNET.genesis_hash)
    for script, error in ((outsider, errors.UnauthorizedPegOut), (wrong_chain, errors.WrongParentChain)):
        # Default: peg-outs are checked by shape only, as before.
        plain = Chain(None)
        tx = plain.pegout_tx(script)
        assert plain.chain.validate_transaction(tx) == 1_000
        plain.block_ok(tx)
        with_peg = Chain(PegOutRules(PEG))
        with pytest.raises(error):
            with_peg.chain.validate_transaction(tx)
        with pytest.raises(error):
            with_peg.block_ok(tx)
