"""The embedded chain in-process (no HTTP): block rules with Core's reasons,
reorganisations, BIP68 by time, the mempool's replacement rules, partial
merkle trees, the wallet's three address forms, and RPC dispatch details.
Signatures here use regtest.script's BIP143 hash, which test_regtest_script
checks against BIP143's vectors and python-bitcoinlib."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from regtest.address import address_to_script, script_to_address
from regtest.chain import WITNESS_COMMITMENT_HEADER
from regtest.merkle import MerkleBlock, PartialMerkleTree
from regtest.node import Node
from regtest.params import REGTEST
from regtest.primitives import (
    COIN,
    Block,
    BlockHeader,
    OutPoint,
    Transaction,
    TxIn,
    TxOut,
    block_merkle_root,
    hash160,
    hash_to_hex,
    merkle_root,
    sha256,
    sha256d,
)
from regtest.rpc import RpcError, dispatch
from regtest.script import OP_CHECKSEQUENCEVERIFY, push_data, push_int, segwit_v0_sighash

MINER = b"\x00\x14" + bytes(20)  # coinbases nobody here needs to spend
FEE = 2_000


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "node", REGTEST)
    n.load()
    yield n
    n.shutdown()


def call(node: Node, method: str, *params: Any, wallet: str | None = None) -> Any:
    return dispatch(node, method, list(params), wallet)


def rpc_error(node: Node, method: str, *params: Any) -> RpcError:
    with pytest.raises(RpcError) as info:
        call(node, method, *params)
    return info.value


class Key:
    def __init__(self) -> None:
        self.priv = PrivateKey()
        self.pub = self.priv.public_key.format()
        self.spk = b"\x00\x14" + hash160(self.pub)
        self.address = script_to_address(self.spk, REGTEST)


def spend(
    coins: list[tuple[OutPoint, TxOut, Key]],
    outputs: list[TxOut],
    *,
    sequence: int = 0xFFFFFFFD,
    version: int = 2,
) -> Transaction:
    unsigned = Transaction(version, tuple(TxIn(op, b"", sequence) for op, _, _ in coins), tuple(outputs))
    vin = []
    for i, (op, out, key) in enumerate(coins):
        code = b"\x76\xa9\x14" + hash160(key.pub) + b"\x88\xac"
        sig = key.priv.sign(segwit_v0_sighash(unsigned, i, code, out.value, 1), hasher=None) + b"\x01"
        vin.append(TxIn(op, b"", sequence, (sig, key.pub)))
    return Transaction(version, tuple(vin), unsigned.vout)


def mature_coin(node: Node, key: Key) -> tuple[OutPoint, TxOut, Key]:
    """A spendable coinbase output paying ``key`` (mined, then buried 100 deep)."""
    [h] = node.generate(key.spk, 1, 10**6)
    block = node.chain.blocks[bytes.fromhex(h)[::-1]]
    node.generate(MINER, 100, 10**6)
    return OutPoint(block.txs[0].txid, 0), block.txs[0].vout[0], key


def solve_with(node: Node, block: Block) -> Block:
    solved = node.chain.solve(block, 10**6)
    assert solved is not None
    return solved


def rebuild(block: Block, *, coinbase: Transaction | None = None, header: dict[str, Any] | None = None) -> Block:
    """The block with another coinbase and/or header fields; merkle root recomputed
    unless given, nonce re-solved by the caller."""
    txs = (coinbase or block.txs[0], *block.txs[1:])
    fields = {"merkle_root": block_merkle_root(txs)[0], **(header or {})}
    return Block(dataclasses.replace(block.header, **fields), txs)


# --- blocks ---------------------------------------------------------------------------------------


def test_subsidy_halves_every_150_blocks_and_coinbases_carry_height(node: Node) -> None:
    node.generate(MINER, 301, 10**6)
    chain = node.chain
    value = {h: chain.blocks[chain.active[h].hash].txs[0].vout[0].value for h in (1, 149, 150, 299, 300, 301)}
    assert value == {
        1: 50 * COIN,
        149: 50 * COIN,
        150: 25 * COIN,
        299: 25 * COIN,
        300: COIN * 25 // 2,
        301: COIN * 25 // 2,
    }
    for height in (1, 16, 17, 300):
        coinbase = chain.blocks[chain.active[height].hash].txs[0]
        assert coinbase.vin[0].script_sig.startswith(push_int(height))
        assert coinbase.vout[-1].script_pubkey.startswith(WITNESS_COMMITMENT_HEADER)
        assert coinbase.vin[0].witness == (b"\x00" * 32,)
    # The genesis coinbase is not spendable, as in Core.
    assert OutPoint(REGTEST.genesis.txs[0].txid, 0) not in chain.utxo


def test_blocks_refused_with_cores_reasons(node: Node) -> None:
    node.generate(MINER, 3, 10**6)
    chain = node.chain
    template = chain.create_block(MINER, [], 0, node.now())
    submit = lambda b: call(node, "submitblock", b.serialize().hex())  # noqa: E731

    assert submit(solve_with(node, rebuild(template, header={"merkle_root": b"\x01" * 32}))) == "bad-txnmrklroot"
    cb = template.txs[0]
    rich = Transaction(cb.version, cb.vin, (TxOut(cb.vout[0].value + 1, MINER), *cb.vout[1:]), cb.locktime)
    assert submit(solve_with(node, rebuild(template, coinbase=rich))) == "bad-cb-amount"
    wrong_height = Transaction(
        cb.version, (dataclasses.replace(cb.vin[0], script_sig=push_int(99) + b"\x00"),), cb.vout, cb.locktime
    )
    assert submit(solve_with(node, rebuild(template, coinbase=wrong_height))) == "bad-cb-height"
    bad_commit = Transaction(cb.version, cb.vin, (cb.vout[0], TxOut(0, WITNESS_COMMITMENT_HEADER + b"\x00" * 32)), 0)
    assert submit(solve_with(node, rebuild(template, coinbase=bad_commit))) == "bad-witness-merkle-match"
    no_nonce = Transaction(cb.version, (dataclasses.replace(cb.vin[0], witness=()),), cb.vout, cb.locktime)
    assert submit(solve_with(node, rebuild(template, coinbase=no_nonce))) == "bad-witness-nonce-size"
    old = rebuild(template, header={"time": chain.tip.mtp})
    assert submit(solve_with(node, old)) == "time-too-old"
    future = rebuild(template, header={"time": node.now() + 3 * 3600})
    assert submit(solve_with(node, future)) == "time-too-new"
    assert submit(solve_with(node, rebuild(template, header={"bits": 0x207FFFFE}))) == "bad-diffbits"
    assert submit(solve_with(node, rebuild(template, header={"version": 1}))) == "bad-version(0x00000001)"
    orphan = rebuild(template, header={"prev_hash": b"\x07" * 32})
    assert submit(solve_with(node, orphan)) == "prev-blk-not-found"
    # A nonce that misses the target.
    target = (0x7FFFFF) << (8 * (0x20 - 3))
    nonce = next(n for n in range(1000) if int.from_bytes(template.header.with_nonce(n).hash, "little") > target)
    assert submit(Block(template.header.with_nonce(nonce), template.txs)) == "high-hash"
    # Nothing above was connected; the template itself is fine, once.
    good = solve_with(node, template)
    assert submit(good) is None and chain.tip.hash == good.hash
    assert submit(good) == "duplicate"
    with pytest.raises(RpcError, match="Block does not start with a coinbase") as info:
        call(node, "submitblock", Block(good.header, good.txs[1:] + good.txs[:0]).serialize().hex() or "00")
    assert info.value.code == -22


def test_block_with_an_invalid_spend_is_refused(node: Node) -> None:
    key = Key()
    op, out, _ = mature_coin(node, key)
    chain = node.chain
    thief = Key()
    forged = spend([(op, out, thief)], [TxOut(out.value - FEE, thief.spk)])  # signed by the wrong key
    block = solve_with(node, chain.create_block(MINER, [forged], FEE, node.now()))
    reason = call(node, "submitblock", block.serialize().hex())
    # The thief's key does not hash to the output's key hash.
    assert reason == "mandatory-script-verify-flag-failed (Script failed an OP_EQUALVERIFY operation)"
    assert call(node, "submitblock", block.serialize().hex()) == "duplicate-invalid"
    err = rpc_error(node, "generateblock", key.address, [forged.serialize().hex()])
    assert err.code == -25 and err.message.startswith("TestBlockValidity failed: mandatory-script-verify-flag-failed")
    ghost = spend([(OutPoint(b"\x09" * 32, 0), out, key)], [TxOut(out.value - FEE, key.spk)])
    block = solve_with(node, chain.create_block(MINER, [ghost], FEE, node.now()))
    assert call(node, "submitblock", block.serialize().hex()) == "bad-txns-inputs-missingorspent"
    honest = spend([(op, out, key)], [TxOut(out.value - FEE, key.spk)])
    result = call(node, "generateblock", key.address, [honest.serialize().hex()])
    assert chain.tip.header.hash_hex == result["hash"]
    assert chain.find_tx(honest.txid) is not None


def test_reorg_by_more_work_and_by_invalidateblock(node: Node, tmp_path: Path) -> None:
    key = Key()
    op, out, _ = mature_coin(node, key)
    chain = node.chain
    tx = spend([(op, out, key)], [TxOut(out.value - FEE, key.spk)])
    node.accept_to_mempool(tx)
    fork_point = chain.tip
    [confirming] = node.generate(MINER, 1, 10**6)
    assert tx.txid not in node.mempool.entries and chain.find_tx(tx.txid) is not None

    # A competing branch from the fork point: equal work first (stays a side branch) ...
    side1 = solve_with(node, chain.create_block(key.spk, [], 0, node.now(), prev=fork_point))
    assert call(node, "submitblock", side1.serialize().hex()) == "inconclusive"
    assert chain.tip.header.hash_hex == confirming
    # ... then more work: the node reorganises and the transaction returns to the mempool.
    side2 = solve_with(node, chain.create_block(key.spk, [], 0, node.now(), prev=chain.index[side1.hash]))
    assert call(node, "submitblock", side2.serialize().hex()) is None
    assert chain.tip.hash == side2.hash
    assert chain.find_tx(tx.txid) is None and tx.txid in node.mempool.entries
    tips = {t["hash"]: t for t in call(node, "getchaintips")}
    assert tips[confirming]["status"] == "valid-fork" and tips[side2.hash_hex]["status"] == "active"
    assert call(node, "getrawtransaction", tx.txid_hex, 1)  # from the mempool now

    # invalidateblock takes the branch away again; reconsiderblock restores it.
    call(node, "invalidateblock", side1.hash_hex)
    assert chain.tip.header.hash_hex == confirming and tx.txid not in node.mempool.entries
    tips = {t["hash"]: t["status"] for t in call(node, "getchaintips")}
    assert tips[confirming] == "active" and tips[side2.hash_hex] == "invalid"
    node.shutdown()  # the invalid mark persists across a restart
    again = Node(tmp_path / "node", REGTEST)
    again.load()
    assert again.chain.tip.header.hash_hex == confirming
    call(again, "reconsiderblock", side1.hash_hex)
    assert again.chain.tip.hash == side2.hash
    again.shutdown()
    node.load()  # for the fixture's teardown


def test_bip68_time_based_relative_lock(node: Node) -> None:
    key = Key()
    op, out, _ = mature_coin(node, key)
    t0 = node.chain.tip.mtp + 1000
    call(node, "setmocktime", t0)
    node.generate(MINER, 11, 10**6)
    # <1 unit of 512 s, time-based> OP_CHECKSEQUENCEVERIFY, anyone may spend after it.
    sequence = (1 << 22) | 1
    script = push_int(sequence) + bytes([OP_CHECKSEQUENCEVERIFY])
    spk = b"\x00\x20" + sha256(script)
    funding = spend([(op, out, key)], [TxOut(out.value - FEE, spk)])
    node.accept_to_mempool(funding)
    node.generate(MINER, 1, 10**6)
    locked_out = TxOut(out.value - 2 * FEE, key.spk)

    def unlock() -> Transaction:
        return Transaction(2, (TxIn(OutPoint(funding.txid, 0), b"", sequence, (script,)),), (locked_out,))

    with pytest.raises(RpcError, match="non-BIP68-final"):
        call(node, "sendrawtransaction", unlock().serialize().hex())
    call(node, "setmocktime", t0 + 600)
    node.generate(MINER, 1, 10**6)
    with pytest.raises(RpcError, match="non-BIP68-final"):  # the median time has barely moved
        call(node, "sendrawtransaction", unlock().serialize().hex())
    node.generate(MINER, 6, 10**6)  # now the median of the last 11 blocks is past t0 + 512
    assert call(node, "sendrawtransaction", unlock().serialize().hex()) == unlock().txid_hex


# --- the mempool ------------------------------------------------------------------------------------


def test_replacement_rules_and_descendant_eviction(node: Node) -> None:
    key = Key()
    op, out, _ = mature_coin(node, key)
    other = Key()
    parent = spend([(op, out, key)], [TxOut(out.value - FEE, key.spk)])
    child = spend([(OutPoint(parent.txid, 0), parent.vout[0], key)], [TxOut(parent.vout[0].value - FEE, key.spk)])
    node.accept_to_mempool(parent)
    node.accept_to_mempool(child)
    entry = call(node, "getmempoolentry", parent.txid_hex)
    assert entry["descendantcount"] == 2 and entry["spentby"] == [child.txid_hex]
    assert entry["bip125-replaceable"] is True

    def rejected(tx: Transaction) -> str:
        with pytest.raises(RpcError) as info:
            call(node, "sendrawtransaction", tx.serialize().hex())
        assert info.value.code == -26
        return info.value.message

    # Higher fee rate than the parent, but less in total than parent + child.
    cheap = spend([(op, out, key)], [TxOut(out.value - FEE - 500, other.spk)])
    assert rejected(cheap).startswith(f"insufficient fee, rejecting replacement {cheap.txid_hex}, less fees than")
    # Spends an output of the transaction it would replace.
    both = spend(
        [(op, out, key), (OutPoint(parent.txid, 0), parent.vout[0], key)], [TxOut(out.value * 2 - 50 * FEE, key.spk)]
    )
    assert rejected(both).startswith("bad-txns-spends-conflicting-tx")
    # Enough to pay for both: replaces the parent and evicts its child.
    rich = spend([(op, out, key)], [TxOut(out.value - 5 * FEE, other.spk)])
    assert call(node, "sendrawtransaction", rich.serialize().hex()) == rich.txid_hex
    assert set(node.mempool.entries) == {rich.txid}
    # A replacement may not bring in new unconfirmed inputs.
    op2, out2, _ = mature_coin(node, key)  # (mines rich too)
    first = spend([(op2, out2, key)], [TxOut(out2.value - FEE, key.spk)])
    node.accept_to_mempool(first)
    unconfirmed = spend([(OutPoint(rich.txid, 0), rich.vout[0], other)], [TxOut(rich.vout[0].value - FEE, other.spk)])
    node.accept_to_mempool(unconfirmed)
    sneaky = spend(
        [(op2, out2, key), (OutPoint(unconfirmed.txid, 0), unconfirmed.vout[0], other)],
        [TxOut(out2.value + unconfirmed.vout[0].value - 20 * FEE, key.spk)],
    )
    assert rejected(sneaky).startswith("replacement-adds-unconfirmed")


def test_mempool_chain_limit(node: Node) -> None:
    key = Key()
    op, out, _ = mature_coin(node, key)
    coin = (op, out, key)
    for i in range(25):
        tx = spend([coin], [TxOut(coin[1].value - FEE, key.spk)])
        node.accept_to_mempool(tx)
        coin = (OutPoint(tx.txid, 0), tx.vout[0], key)
        assert len(node.mempool.entries) == i + 1
    tx = spend([coin], [TxOut(coin[1].value - FEE, key.spk)])
    with pytest.raises(RpcError, match="too-long-mempool-chain"):
        call(node, "sendrawtransaction", tx.serialize().hex())
    # Mining empties the mempool in dependency order.
    node.generate(MINER, 1, 10**6)
    assert not node.mempool.entries


def test_burn_cap_and_fee_cap(node: Node) -> None:
    key = Key()
    op, out, _ = mature_coin(node, key)
    burn = spend([(op, out, key)], [TxOut(1000, b"\x6a\x04abcd"), TxOut(out.value - 1000 - FEE, key.spk)])
    err = rpc_error(node, "sendrawtransaction", burn.serialize().hex())
    assert err.code == -25 and err.message == "Unspendable output exceeds maximum configured by user (maxburnamount)"
    assert call(node, "sendrawtransaction", burn.serialize().hex(), 0, "0.00001") == burn.txid_hex


# --- merkle proofs ---------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 70), st.integers(0, 2**64))
def test_partial_merkle_trees(n_tx: int, seed: int) -> None:
    rng = random.Random(seed)
    txids = [rng.randbytes(32) for _ in range(n_tx)]
    matches = [rng.random() < 0.3 for _ in range(n_tx)]
    tree = PartialMerkleTree.build(txids, matches)
    header = BlockHeader(4, b"\x00" * 32, merkle_root(txids)[0], 0, 0x207FFFFF, 0)
    raw = MerkleBlock(header, tree).serialize()
    parsed = MerkleBlock.from_bytes(raw)
    extracted = parsed.tree.extract_matches()
    assert extracted is not None
    root, matched, positions = extracted
    assert root == header.merkle_root
    assert matched == [t for t, m in zip(txids, matches, strict=True) if m]
    assert positions == [i for i, m in enumerate(matches) if m]
    # Any single changed hash changes the root (or the tree no longer parses as one).
    if tree.hashes:
        i = rng.randrange(len(tree.hashes))
        tampered = list(tree.hashes)
        tampered[i] = bytes([tampered[i][0] ^ 1]) + tampered[i][1:]
        bad = dataclasses.replace(tree, hashes=tuple(tampered)).extract_matches()
        assert bad is None or bad[0] != header.merkle_root


def test_partial_merkle_tree_refusals() -> None:
    a, b = b"\x0a" * 32, b"\x0b" * 32
    # CVE-2012-2459: a duplicated pair must not prove anything.
    assert PartialMerkleTree.build([a, a], [True, False]).extract_matches() is None
    good = PartialMerkleTree.build([a, b], [True, False])
    assert good.extract_matches() is not None
    assert dataclasses.replace(good, n_transactions=0).extract_matches() is None
    assert dataclasses.replace(good, hashes=(*good.hashes, a)).extract_matches() is None  # hash left over
    assert dataclasses.replace(good, bits=good.bits + (False,) * 8).extract_matches() is None  # a byte of bits left
    assert dataclasses.replace(good, n_transactions=10**6).extract_matches() is None


def test_gettxoutproof_for_several_transactions(node: Node) -> None:
    key = Key()
    coins = [mature_coin(node, key) for _ in range(3)]
    txs = [spend([c], [TxOut(c[1].value - FEE, key.spk)]) for c in coins]
    for tx in txs:
        node.accept_to_mempool(tx)
    [h] = node.generate(MINER, 1, 10**6)
    proof = call(node, "gettxoutproof", [txs[0].txid_hex, txs[2].txid_hex], h)
    assert sorted(call(node, "verifytxoutproof", proof)) == sorted([txs[0].txid_hex, txs[2].txid_hex])
    assert rpc_error(node, "gettxoutproof", [txs[0].txid_hex, txs[0].txid_hex]).code == -8
    assert rpc_error(node, "verifytxoutproof", proof[:100]).code == -1  # truncated: Core's stream error


# --- the wallet ---------------------------------------------------------------------------------------------


def test_wallet_receives_and_spends_all_three_forms(node: Node) -> None:
    miner = call(node, "getnewaddress")
    node.generate(address_to_script(miner, REGTEST), 101, 10**6)
    addresses = {kind: call(node, "getnewaddress", "", kind) for kind in ("legacy", "p2sh-segwit", "bech32")}
    assert addresses["legacy"][0] in "mn" and addresses["p2sh-segwit"][0] == "2"
    assert addresses["bech32"].startswith("bcrt1q")
    for address in addresses.values():
        call(node, "sendtoaddress", address, "10")
    node.generate(MINER, 1, 10**6)
    unspent = {u["address"]: u for u in call(node, "listunspent", 1, 9999999, list(addresses.values()))}
    assert set(unspent) == set(addresses.values())
    assert unspent[addresses["legacy"]]["desc"].startswith("pkh(")
    assert unspent[addresses["p2sh-segwit"]]["desc"].startswith("sh(wpkh(")
    assert "redeemScript" in unspent[addresses["p2sh-segwit"]]
    info = call(node, "getaddressinfo", addresses["p2sh-segwit"])
    assert info["ismine"] and info["isscript"] and info["script"] == "witness_v0_keyhash"
    # Spending everything exercises the wallet's signatures for each form through validation.
    balance = Decimal(repr(call(node, "getbalance")))
    txid = call(node, "sendtoaddress", Key().address, str(balance), "", "", True)
    tx = node.mempool.entries[bytes.fromhex(txid)[::-1]].tx
    assert len(tx.vin) >= 4 and len(tx.vout) == 1
    assert Decimal(repr(call(node, "getbalance"))) == 0
    err = rpc_error(node, "sendtoaddress", Key().address, "1")
    assert err.code == -6 and err.message == "Insufficient funds"


def test_estimatesmartfee(tmp_path: Path, node: Node) -> None:
    assert call(node, "estimatesmartfee", 6) == {"errors": ["Insufficient data or no feerate found"], "blocks": 0}
    key = Key()
    coin = mature_coin(node, key)
    tx = spend([coin], [TxOut(coin[1].value - 5_000, key.spk)])
    node.accept_to_mempool(tx)
    node.generate(MINER, 1, 10**6)
    result = call(node, "estimatesmartfee", 1)
    assert result["blocks"] == 2 and result["feerate"].sats == 5_000 * 1000 // tx.vsize
    fixed = Node(tmp_path / "fixed", REGTEST, fixed_feerate=4321)
    fixed.load()
    assert call(fixed, "estimatesmartfee", 3)["feerate"].sats == 4321
    fixed.shutdown()


# --- dispatch -------------------------------------------------------------------------------------------------


def test_dispatch_errors(tmp_path: Path, node: Node) -> None:
    assert rpc_error(node, "nosuchmethod").code == -32601
    usage = rpc_error(node, "getblockhash")
    assert usage.code == -1 and usage.message.startswith("getblockhash height")
    assert rpc_error(node, "getblockhash", 0, 1).code == -1
    assert rpc_error(node, "getblockhash", "0").code == -3
    with pytest.raises(RpcError) as info:
        dispatch(node, "getblockhash", {"hieght": 0})
    assert info.value.code == -8
    with pytest.raises(RpcError) as info:
        dispatch(node, "getbalance", [], "other-wallet")
    assert info.value.code == -18
    assert rpc_error(node, "getblock", "zz").message == "blockhash must be of length 64 (not 2, for 'zz')"
    err = rpc_error(node, "getrawtransaction", hash_to_hex(REGTEST.genesis.txs[0].txid))
    assert err.code == -5 and "genesis block coinbase" in err.message
    cold = Node(tmp_path / "cold", REGTEST)
    with pytest.raises(RpcError) as info:
        dispatch(cold, "getblockcount", [])
    assert info.value.code == -28


def test_getrawtransaction_variants_and_decoders(node: Node) -> None:
    key = Key()
    coin = mature_coin(node, key)
    tx = spend([coin], [TxOut(coin[1].value - FEE, key.spk)])
    node.accept_to_mempool(tx)
    in_pool = call(node, "getrawtransaction", tx.txid_hex, True)
    assert "blockhash" not in in_pool and in_pool["hex"] == tx.serialize().hex()
    [h] = node.generate(MINER, 1, 10**6)
    verbose = call(node, "getrawtransaction", tx.txid_hex, 2, h)
    assert verbose["in_active_chain"] is True and verbose["blockhash"] == h and verbose["confirmations"] == 1
    assert verbose["fee"].sats == FEE and verbose["vin"][0]["prevout"]["value"].sats == coin[1].value
    decoded = call(node, "decoderawtransaction", tx.serialize().hex())
    assert decoded["txid"] == tx.txid_hex and decoded["vsize"] == tx.vsize and "hex" not in decoded
    script = push_int(2) + b"".join(push_data(Key().pub) for _ in range(3)) + push_int(3) + b"\xae"
    described = call(node, "decodescript", script.hex())
    assert described["type"] == "multisig" and described["segwit"]["type"] == "witness_v0_scripthash"
    assert described["segwit"]["address"] == script_to_address(b"\x00\x20" + sha256(script), REGTEST)
    assert described["asm"].startswith("2 ") and described["asm"].endswith(" 3 OP_CHECKMULTISIG")
    block = call(node, "getblock", h, 3)
    assert block["tx"][1]["vin"][0]["prevout"]["generated"] is True
    assert sha256d(bytes.fromhex(call(node, "getblockheader", h, False)))[::-1].hex() == h
