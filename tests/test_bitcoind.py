"""The mainchain RPC, end to end: functionary.bitcoind's client against a real
process on loopback.

By default each module run starts ``python -m regtest`` on a free port in a
temp directory. With ``MAINCHAIN_RPC_URL=http://user:pass@host:port`` the same
tests run against that node instead (it must be ``bitcoind -regtest``; a wallet
is created if none is loaded), so they check the stand-in against Bitcoin Core.

Transactions here are built and signed with python-bitcoinlib's structures and
signature hash (BIP143) and coincurve, independently of the stand-in's own code.
Every assertion on a reject reason uses Bitcoin Core 28's reason text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from bitcoin import segwit_addr
from bitcoin.core import (
    CBlock,
    CMutableTransaction,
    COutPoint,
    CTxIn,
    CTxInWitness,
    CTxOut,
    CTxWitness,
    b2lx,
    lx,
)
from bitcoin.core.script import (
    OP_CHECKMULTISIG,
    OP_CHECKSEQUENCEVERIFY,
    OP_DEPTH,
    OP_DROP,
    OP_ELSE,
    OP_ENDIF,
    OP_EQUAL,
    OP_IF,
    SIGHASH_ALL,
    SIGVERSION_WITNESS_V0,
    CScript,
    CScriptWitness,
    SignatureHash,
)
from coincurve import PrivateKey

from functionary.bitcoind import (
    SCRIPT_FAILURE_PREFIXES,
    BitcoinRpc,
    RpcAuthError,
    RpcDeserializationError,
    RpcError,
    RpcInvalidAddressOrKey,
    RpcInvalidParameter,
    RpcMethodNotFound,
    RpcVerifyAlreadyInChain,
    RpcVerifyError,
    RpcVerifyRejected,
    btc,
    sats,
)
from regtest.testing import Mainchain, mainchain

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
FEE = 2_000  # sats: comfortably above the minimum relay fee for these small transactions
# Core's ScriptErrorString texts.
EVAL_FALSE = "Script evaluated without error but finished with a false/empty top stack element"
NULLFAIL = "Signature must be zero for failed CHECK(MULTI)SIG operation"
LOCKTIME = "Locktime requirement not satisfied"


# --- keys, scripts, transactions (python-bitcoinlib + coincurve) ------------------------------


def hash160(b: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(b).digest()).digest()


class Key:
    def __init__(self) -> None:
        self.priv = PrivateKey()
        self.pub = self.priv.public_key.format(compressed=True)

    def sign(self, digest: bytes, hashtype: int = SIGHASH_ALL) -> bytes:
        return self.priv.sign(digest, hasher=None) + bytes((hashtype,))

    def sign_high_s(self, digest: bytes) -> bytes:
        """The same signature with S replaced by n - S: valid, but not low-S."""
        der = self.priv.sign(digest, hasher=None)
        len_r = der[3]
        r = int.from_bytes(der[4 : 4 + len_r], "big")
        s = int.from_bytes(der[6 + len_r :], "big")
        return _der(r, N - s) + bytes((SIGHASH_ALL,))


def _der(r: int, s: int) -> bytes:
    def enc(x: int) -> bytes:
        b = x.to_bytes((x.bit_length() + 7) // 8, "big")
        if b[0] & 0x80:
            b = b"\x00" + b
        return b"\x02" + bytes((len(b),)) + b

    body = enc(r) + enc(s)
    return b"\x30" + bytes((len(body),)) + body


def p2wpkh(pub: bytes) -> bytes:
    return b"\x00\x14" + hash160(pub)


def p2wsh(script: bytes) -> bytes:
    return b"\x00\x20" + hashlib.sha256(script).digest()


def address(spk: bytes) -> str:
    assert spk[0] == 0
    return str(segwit_addr.encode("bcrt", 0, spk[2:]))


def multisig(m: int, keys: Sequence[Key]) -> bytes:
    return bytes(CScript([m, *[k.pub for k in keys], len(keys), OP_CHECKMULTISIG]))


def fedpeg(watchmen: Sequence[Key], m: int, emergency: Sequence[Key], k: int, csv: int) -> bytes:
    """Liquid's fedpegscript template (small variant)."""
    return bytes(
        CScript(
            [
                OP_DEPTH,
                m + 1,
                OP_EQUAL,
                OP_IF,
                m,
                *[w.pub for w in watchmen],
                len(watchmen),
                OP_ELSE,
                csv,
                OP_CHECKSEQUENCEVERIFY,
                OP_DROP,
                k,
                *[e.pub for e in emergency],
                len(emergency),
                OP_ENDIF,
                OP_CHECKMULTISIG,
            ]
        )
    )


@dataclass(frozen=True)
class Utxo:
    txid: str
    vout: int
    value: int
    spk: bytes


def tx_spending(
    inputs: Sequence[Utxo],
    outputs: Sequence[tuple[bytes, int]],
    *,
    version: int = 2,
    sequence: int = 0xFFFFFFFD,
    locktime: int = 0,
) -> CMutableTransaction:
    return CMutableTransaction(
        [CTxIn(COutPoint(lx(u.txid), u.vout), nSequence=sequence) for u in inputs],
        [CTxOut(value, CScript(spk)) for spk, value in outputs],
        nLockTime=locktime,
        nVersion=version,
    )


def segwit_digest(tx: CMutableTransaction, i: int, script_code: bytes, value: int) -> bytes:
    return bytes(
        SignatureHash(CScript(script_code), tx, i, SIGHASH_ALL, amount=value, sigversion=SIGVERSION_WITNESS_V0)
    )


def set_witnesses(tx: CMutableTransaction, stacks: Sequence[Sequence[bytes]]) -> str:
    tx.wit = CTxWitness([CTxInWitness(CScriptWitness(list(s))) for s in stacks])
    return str(tx.serialize().hex())


def signed_p2wpkh(tx: CMutableTransaction, spent: Sequence[tuple[Utxo, Key]]) -> str:
    stacks = []
    for i, (u, key) in enumerate(spent):
        code = b"\x76\xa9\x14" + hash160(key.pub) + b"\x88\xac"
        stacks.append([key.sign(segwit_digest(tx, i, code, u.value)), key.pub])
    return set_witnesses(tx, stacks)


# --- chain helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mainchain]:
    with mainchain(tmp_path_factory.mktemp("mainchain")) as mc:
        yield mc


@pytest.fixture(scope="module")
def rpc(chain: Mainchain) -> BitcoinRpc:
    return chain.rpc


@pytest.fixture(scope="module")
def funded(rpc: BitcoinRpc) -> BitcoinRpc:
    """A wallet with mature coins: 101 blocks (more only if the wallet is short)."""
    if rpc.getbalance() < 10:
        rpc.generatetoaddress(101, rpc.getnewaddress())
    return rpc


def subsidy(height: int) -> Decimal:
    """Regtest's block reward: 50 BTC halving every 150 blocks."""
    return btc((50 * 100_000_000) >> (height // 150))


def mine(rpc: BitcoinRpc, n: int = 1) -> list[str]:
    return rpc.generatetoaddress(n, rpc.getnewaddress())


def find_output(rpc: BitcoinRpc, txid: str, spk: bytes) -> Utxo:
    tx = rpc.getrawtransaction(txid, True)
    for out in tx["vout"]:
        if out["scriptPubKey"]["hex"] == spk.hex():
            return Utxo(txid, out["n"], sats(out["value"]), spk)
    raise AssertionError(f"{txid} pays nothing to {spk.hex()}")


def fund(rpc: BitcoinRpc, spk: bytes, value: int, confirm: bool = True) -> Utxo:
    txid = rpc.sendtoaddress(address(spk), btc(value), fee_rate=2)
    if confirm:
        mine(rpc)
    return find_output(rpc, txid, spk)


def expect_reject(rpc: BitcoinRpc, hexstring: str, cls: type[RpcError], reason: str) -> RpcError:
    with pytest.raises(cls) as info:
        rpc.sendrawtransaction(hexstring)
    assert info.value.reject_reason == reason, info.value.message
    return info.value


def expect_script_failure(chain: Mainchain, hexstring: str, error: str, policy_error: str | None = None) -> None:
    """A consensus script failure. The stand-in names the consensus error, as Core 29;
    Core 28 named the first (policy) error, and Core 30 words the prefix differently,
    so a real node may give either error under any of the known prefixes."""
    with pytest.raises(RpcVerifyRejected) as info:
        chain.rpc.sendrawtransaction(hexstring)
    reason = info.value.reject_reason
    if not chain.external:
        assert reason == f"mandatory-script-verify-flag-failed ({error})"
        return
    prefix, _, detail = reason.partition(" (")
    assert prefix in SCRIPT_FAILURE_PREFIXES, reason
    assert detail.rstrip(")") in {error, policy_error or error}, reason


# --- blocks and the wallet ---------------------------------------------------------------------------------


def test_regtest_genesis_and_chain_info(rpc: BitcoinRpc) -> None:
    assert rpc.getblockhash(0) == "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    info = rpc.getblockchaininfo()
    assert info["chain"] == "regtest"
    assert info["blocks"] == rpc.getblockcount()
    assert info["bestblockhash"] == rpc.getbestblockhash()
    assert len(info["chainwork"]) == 64 and info["pruned"] is False


def test_mine_send_and_balances(rpc: BitcoinRpc) -> None:
    mine(rpc)  # sweep whatever an earlier run left in the mempool: the next coinbases carry no fees
    start = rpc.getblockcount()
    mine_to = rpc.getnewaddress()
    assert mine_to.startswith("bcrt1q")
    hashes = rpc.generatetoaddress(101, mine_to)
    assert len(hashes) == 101 and rpc.getblockcount() == start + 101
    assert rpc.getbestblockhash() == hashes[-1]
    # The first of those coinbases is mature (101 confirmations), the rest are not.
    mature = [u for u in rpc.listunspent(addresses=[mine_to]) if u["confirmations"] >= 101]
    assert [u["amount"] for u in mature] == [subsidy(start + 1)]

    receiver = rpc.getnewaddress()
    before = rpc.getbalance()
    txid = rpc.sendtoaddress(receiver, Decimal("1.25"), fee_rate=2)
    assert txid in rpc.getrawmempool()
    assert rpc.listunspent(addresses=[receiver]) == []  # minconf 1
    unconfirmed = rpc.listunspent(minconf=0, addresses=[receiver])
    assert [(u["txid"], u["amount"], u["confirmations"]) for u in unconfirmed] == [(txid, Decimal("1.25"), 0)]
    block = mine(rpc)[0]
    assert txid not in rpc.getrawmempool()
    [coin] = rpc.listunspent(addresses=[receiver])
    assert coin["txid"] == txid and coin["confirmations"] == 1 and coin["amount"] == Decimal("1.25")
    assert coin["scriptPubKey"] == rpc.getaddressinfo(receiver)["scriptPubKey"]
    tx = rpc.getrawtransaction(txid, True)
    assert tx["blockhash"] == block and tx["confirmations"] == 1
    # Paying ourselves costs only the fee, and the new block matured the coinbase 100 below it.
    fee = before + subsidy(start + 2) - rpc.getbalance()
    assert Decimal("0") < fee < Decimal("0.0001")
    assert rpc.getaddressinfo(receiver)["ismine"] is True


def test_getblock_shapes(funded: BitcoinRpc) -> None:
    rpc = funded
    mine(rpc)  # an empty mempool, so the next block holds our transaction alone
    txid = rpc.sendtoaddress(rpc.getnewaddress(), Decimal("0.5"), fee_rate=3)
    blockhash = mine(rpc)[0]

    raw = rpc.getblock(blockhash, 0)
    block = CBlock.deserialize(bytes.fromhex(raw))
    assert b2lx(block.GetHash()) == blockhash
    assert b2lx(block.vtx[1].GetTxid()) == txid

    header_fields = {
        "hash",
        "confirmations",
        "height",
        "version",
        "versionHex",
        "merkleroot",
        "time",
        "mediantime",
        "nonce",
        "bits",
        "difficulty",
        "chainwork",
        "nTx",
        "previousblockhash",
    }
    one = rpc.getblock(blockhash, 1)
    assert header_fields | {"strippedsize", "size", "weight", "tx"} <= set(one)
    assert one["tx"] == [b2lx(t.GetTxid()) for t in block.vtx]
    assert one["nTx"] == 2 and one["confirmations"] == 1 and one["bits"] == "207fffff"
    assert one["size"] == len(raw) // 2 and one["weight"] == 3 * one["strippedsize"] + one["size"]
    assert one["height"] == rpc.getblockcount() and "nextblockhash" not in one

    two = rpc.getblock(blockhash, 2)
    coinbase, spend = two["tx"]
    assert "coinbase" in coinbase["vin"][0] and "fee" not in coinbase
    # BIP34: the coinbase starts with the height; segwit: it commits to witnesses.
    assert coinbase["vin"][0]["coinbase"].startswith(bytes(CScript([one["height"]])).hex())
    assert any(o["scriptPubKey"]["hex"].startswith("6a24aa21a9ed") for o in coinbase["vout"])
    assert spend["txid"] == txid and spend["fee"] > 0 and spend["hex"] == rpc.getrawtransaction(txid)
    assert {"txid", "vout", "scriptSig", "txinwitness", "sequence"} <= set(spend["vin"][0])
    assert {"value", "n", "scriptPubKey"} == set(spend["vout"][0])
    assert {"asm", "desc", "hex", "address", "type"} <= set(spend["vout"][0]["scriptPubKey"])

    header = rpc.getblockheader(blockhash)
    assert header_fields <= set(header) and header["hash"] == blockhash
    assert rpc.getblockheader(blockhash, False) == raw[:160]
    prev = rpc.getblock(one["previousblockhash"], 1)
    assert prev["nextblockhash"] == blockhash

    genesis = rpc.getblock(rpc.getblockhash(0), 2)
    assert "previousblockhash" not in genesis and genesis["height"] == 0
    with pytest.raises(RpcInvalidAddressOrKey, match="Block not found"):
        rpc.getblock("00" * 32)
    with pytest.raises(RpcInvalidParameter, match="Block height out of range"):
        rpc.getblockhash(rpc.getblockcount() + 1)


def test_gettxout_follows_the_utxo_set(funded: BitcoinRpc) -> None:
    rpc = funded
    key = Key()
    utxo = fund(rpc, p2wpkh(key.pub), 200_000)
    out = rpc.gettxout(utxo.txid, utxo.vout)
    assert out is not None
    assert sats(out["value"]) == 200_000 and out["confirmations"] == 1 and out["coinbase"] is False
    assert out["scriptPubKey"]["type"] == "witness_v0_keyhash" and out["bestblock"] == rpc.getbestblockhash()
    spend = tx_spending([utxo], [(p2wpkh(key.pub), utxo.value - FEE)])
    txid = rpc.sendrawtransaction(signed_p2wpkh(spend, [(utxo, key)]))
    assert rpc.gettxout(utxo.txid, utxo.vout) is None  # spent in the mempool
    assert rpc.gettxout(utxo.txid, utxo.vout, False) is not None  # still unspent in the chain
    pending = rpc.gettxout(txid, 0)
    assert pending is not None and pending["confirmations"] == 0
    mine(rpc)
    assert rpc.gettxout(utxo.txid, utxo.vout, False) is None


# --- merkle proofs ------------------------------------------------------------------------------------


def extract_proof(proof: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """An independent BIP37 reader: (header, computed root, matched txids)."""
    header, rest = proof[:80], proof[80:]
    n_tx = int.from_bytes(rest[:4], "little")
    count = rest[4]
    hashes = [rest[5 + 32 * i : 37 + 32 * i] for i in range(count)]
    nbytes = rest[5 + 32 * count]
    flags = rest[6 + 32 * count : 6 + 32 * count + nbytes]
    bits = iter([(flags[i // 8] >> (i % 8)) & 1 for i in range(8 * nbytes)])
    hash_iter = iter(hashes)
    matched: list[bytes] = []

    def width(h: int) -> int:
        return (n_tx + (1 << h) - 1) >> h

    def walk(h: int, pos: int) -> bytes:
        flag = next(bits)
        if h == 0 or not flag:
            node = next(hash_iter)
            if h == 0 and flag:
                matched.append(node)
            return node
        left = walk(h - 1, 2 * pos)
        right = walk(h - 1, 2 * pos + 1) if 2 * pos + 1 < width(h - 1) else left
        return hashlib.sha256(hashlib.sha256(left + right).digest()).digest()

    height = 0
    while width(height) > 1:
        height += 1
    return header, walk(height, 0), matched


def test_txoutproof_round_trip_and_tampering(funded: BitcoinRpc) -> None:
    rpc = funded
    txids = [rpc.sendtoaddress(rpc.getnewaddress(), Decimal("0.1"), fee_rate=2) for _ in range(4)]
    blockhash = mine(rpc)[0]
    assert set(txids) <= set(rpc.getblock(blockhash)["tx"])

    proof = rpc.gettxoutproof([txids[2]])
    assert rpc.gettxoutproof([txids[2]], blockhash) == proof
    assert rpc.verifytxoutproof(proof) == [txids[2]]
    header, root, matched = extract_proof(bytes.fromhex(proof))
    assert root == header[36:68] and [b2lx(m) for m in matched] == [txids[2]]
    assert b2lx(hashlib.sha256(hashlib.sha256(header).digest()).digest()) == blockhash

    two = rpc.gettxoutproof([txids[0], txids[3]])
    assert sorted(rpc.verifytxoutproof(two)) == sorted([txids[0], txids[3]])

    # A changed hash inside the tree no longer reaches the header's merkle root.
    raw = bytearray.fromhex(proof)
    raw[80 + 4 + 1 + 5] ^= 0x01
    assert rpc.verifytxoutproof(raw.hex()) == []
    # A changed header (nonce) is a block the node does not have.
    raw = bytearray.fromhex(proof)
    raw[76] ^= 0x01
    with pytest.raises(RpcInvalidAddressOrKey, match="Block not found in chain"):
        rpc.verifytxoutproof(raw.hex())
    with pytest.raises(RpcInvalidAddressOrKey, match="Not all transactions found"):
        rpc.gettxoutproof([txids[0]], rpc.getblockhash(1))
    with pytest.raises(RpcInvalidAddressOrKey, match="Transaction not yet in block"):
        rpc.gettxoutproof(["ab" * 32])


# --- scripts: multisig and the fedpegscript ---------------------------------------------------------------


def test_p2wsh_2_of_3_multisig(chain: Mainchain, funded: BitcoinRpc) -> None:
    rpc = funded
    keys = [Key(), Key(), Key()]
    script = multisig(2, keys)
    utxo = fund(rpc, p2wsh(script), 1_000_000)
    dest = Key()
    tx = tx_spending([utxo], [(p2wpkh(dest.pub), utxo.value - FEE)])
    digest = segwit_digest(tx, 0, script, utxo.value)

    # Signatures out of key order fail CHECKMULTISIG's single walk.
    bad = set_witnesses(tx, [[b"", keys[2].sign(digest), keys[0].sign(digest), script]])
    expect_script_failure(chain, bad, EVAL_FALSE, NULLFAIL)
    # A non-empty dummy breaks NULLDUMMY (consensus since segwit).
    nonnull_dummy = set_witnesses(tx, [[b"\x01", keys[0].sign(digest), keys[2].sign(digest), script]])
    expect_script_failure(chain, nonnull_dummy, "Dummy CHECKMULTISIG argument must be zero")
    # A high-S signature is valid under consensus, refused by policy.
    expect_reject(
        rpc,
        set_witnesses(tx, [[b"", keys[0].sign_high_s(digest), keys[2].sign(digest), script]]),
        RpcVerifyRejected,
        "non-mandatory-script-verify-flag (Non-canonical signature: S value is unnecessarily high)",
    )
    good = set_witnesses(tx, [[b"", keys[0].sign(digest), keys[2].sign(digest), script]])
    [result] = rpc.testmempoolaccept([good])
    assert result["allowed"] is True and result["vsize"] > 0 and sats(result["fees"]["base"]) == FEE
    txid = rpc.sendrawtransaction(good)
    mine(rpc)
    assert rpc.getrawtransaction(txid, True)["confirmations"] == 1
    assert find_output(rpc, txid, p2wpkh(dest.pub)).value == utxo.value - FEE


CSV_DELAY = 10


def test_fedpegscript_watchmen_branch_spends_at_once(chain: Mainchain, funded: BitcoinRpc) -> None:
    rpc = funded
    watchmen = [Key(), Key(), Key()]
    emergency = [Key()]
    script = fedpeg(watchmen, 2, emergency, 1, CSV_DELAY)
    utxo = fund(rpc, p2wsh(script), 2_000_000)
    tx = tx_spending([utxo], [(p2wpkh(watchmen[0].pub), utxo.value - FEE)])
    digest = segwit_digest(tx, 0, script, utxo.value)
    # One watchman signature is not the quorum: OP_DEPTH picks the emergency branch,
    # whose CSV the input's sequence does not meet.
    one = set_witnesses(tx, [[b"", watchmen[1].sign(digest), script]])
    expect_script_failure(chain, one, LOCKTIME)
    two = set_witnesses(tx, [[b"", watchmen[1].sign(digest), watchmen[2].sign(digest), script]])
    txid = rpc.sendrawtransaction(two)
    mine(rpc)
    assert rpc.getrawtransaction(txid, True)["confirmations"] == 1


def test_fedpegscript_emergency_branch_only_after_the_csv_delay(chain: Mainchain, funded: BitcoinRpc) -> None:
    rpc = funded
    watchmen = [Key(), Key(), Key()]
    emergency = [Key()]
    script = fedpeg(watchmen, 2, emergency, 1, CSV_DELAY)
    utxo = fund(rpc, p2wsh(script), 2_000_000)  # one confirmation

    def emergency_spend(sequence: int, version: int = 2) -> str:
        tx = tx_spending([utxo], [(p2wpkh(emergency[0].pub), utxo.value - FEE)], sequence=sequence, version=version)
        digest = segwit_digest(tx, 0, script, utxo.value)
        return set_witnesses(tx, [[b"", emergency[0].sign(digest), script]])

    # Version 1 transactions do not enforce BIP68, so OP_CSV fails them (BIP112).
    expect_script_failure(chain, emergency_spend(CSV_DELAY, version=1), LOCKTIME)
    # The right sequence, too early: BIP68 keeps it out of the next block (checked before scripts).
    for _ in range(CSV_DELAY - 2):
        expect_reject(rpc, emergency_spend(CSV_DELAY), RpcVerifyRejected, "non-BIP68-final")
        mine(rpc)
    # Depth CSV_DELAY - 1: a sequence of CSV_DELAY - 1 is final for BIP68 but below the script's delay.
    assert rpc.gettxout(utxo.txid, utxo.vout)["confirmations"] == CSV_DELAY - 1  # type: ignore[index]
    expect_script_failure(chain, emergency_spend(CSV_DELAY - 1), LOCKTIME)
    expect_reject(rpc, emergency_spend(CSV_DELAY), RpcVerifyRejected, "non-BIP68-final")
    mine(rpc)
    txid = rpc.sendrawtransaction(emergency_spend(CSV_DELAY))
    mine(rpc)
    assert rpc.getrawtransaction(txid, True)["confirmations"] == 1


# --- Core's reject reasons ----------------------------------------------------------------------------------


@pytest.fixture
def coin(funded: BitcoinRpc) -> tuple[Utxo, Key]:
    key = Key()
    return fund(funded, p2wpkh(key.pub), 500_000), key


def test_reject_missing_or_spent_inputs(funded: BitcoinRpc, coin: tuple[Utxo, Key]) -> None:
    rpc = funded
    utxo, key = coin
    ghost = Utxo("cd" * 32, 0, utxo.value, utxo.spk)
    tx = tx_spending([ghost], [(utxo.spk, ghost.value - FEE)])
    err = expect_reject(rpc, signed_p2wpkh(tx, [(ghost, key)]), RpcVerifyError, "bad-txns-inputs-missingorspent")
    assert err.rpc_code == -25
    [result] = rpc.testmempoolaccept([signed_p2wpkh(tx, [(ghost, key)])])
    assert result["allowed"] is False and result["reject-reason"] == "missing-inputs"


def test_reject_duplicate_inputs(funded: BitcoinRpc, coin: tuple[Utxo, Key]) -> None:
    utxo, key = coin
    tx = tx_spending([utxo, utxo], [(utxo.spk, 2 * utxo.value - FEE)])
    expect_reject(funded, signed_p2wpkh(tx, [(utxo, key), (utxo, key)]), RpcVerifyRejected, "bad-txns-inputs-duplicate")


def test_reject_value_out_above_value_in(funded: BitcoinRpc, coin: tuple[Utxo, Key]) -> None:
    utxo, key = coin
    tx = tx_spending([utxo], [(utxo.spk, utxo.value + 1)])
    err = expect_reject(funded, signed_p2wpkh(tx, [(utxo, key)]), RpcVerifyRejected, "bad-txns-in-belowout")
    assert err.message == "bad-txns-in-belowout, value in (0.005) < value out (0.00500001)"


def test_reject_below_min_relay_fee(funded: BitcoinRpc, coin: tuple[Utxo, Key]) -> None:
    utxo, key = coin
    tx = tx_spending([utxo], [(utxo.spk, utxo.value)])
    hexstring = signed_p2wpkh(tx, [(utxo, key)])
    err = expect_reject(funded, hexstring, RpcVerifyRejected, "min relay fee not met")
    vsize = funded.decoderawtransaction(hexstring)["vsize"]
    assert err.message == f"min relay fee not met, 0 < {vsize}"


def test_reject_premature_coinbase_spend(funded: BitcoinRpc) -> None:
    rpc = funded
    key = Key()
    [blockhash] = rpc.generatetoaddress(1, address(p2wpkh(key.pub)))
    coinbase = rpc.getblock(blockhash, 2)["tx"][0]
    utxo = Utxo(coinbase["txid"], 0, sats(coinbase["vout"][0]["value"]), p2wpkh(key.pub))
    tx = tx_spending([utxo], [(utxo.spk, utxo.value - FEE)])
    err = expect_reject(
        rpc, signed_p2wpkh(tx, [(utxo, key)]), RpcVerifyRejected, "bad-txns-premature-spend-of-coinbase"
    )
    assert err.message.endswith("tried to spend coinbase at depth 1")


def test_reject_conflict_and_replace_by_fee(funded: BitcoinRpc, coin: tuple[Utxo, Key]) -> None:
    rpc = funded
    utxo, key = coin
    fullrbf = bool(rpc.getmempoolinfo().get("fullrbf"))

    def spend(fee: int, sequence: int) -> str:
        return signed_p2wpkh(tx_spending([utxo], [(utxo.spk, utxo.value - fee)], sequence=sequence), [(utxo, key)])

    first = spend(FEE, 0xFFFFFFFE)  # does not signal BIP125
    rpc.sendrawtransaction(first)
    if fullrbf:  # Core 28's default: every transaction is replaceable, signalling or not
        assert rpc.sendrawtransaction(spend(10 * FEE, 0xFFFFFFFE)) in rpc.getrawmempool()
    else:
        expect_reject(rpc, spend(10 * FEE, 0xFFFFFFFE), RpcVerifyRejected, "txn-mempool-conflict")
    # Opt-in replacement of a transaction that signals: more fee replaces, equal fee does not.
    key2 = Key()
    utxo2 = fund(rpc, p2wpkh(key2.pub), 500_000)

    def spend2(fee: int) -> str:
        return signed_p2wpkh(tx_spending([utxo2], [(utxo2.spk, utxo2.value - fee)]), [(utxo2, key2)])

    original = rpc.sendrawtransaction(spend2(FEE))
    same_fee = signed_p2wpkh(tx_spending([utxo2], [(p2wpkh(key.pub), utxo2.value - FEE)]), [(utxo2, key2)])
    err = expect_reject(rpc, same_fee, RpcVerifyRejected, "insufficient fee")
    assert "rejecting replacement" in err.message
    replacement = rpc.sendrawtransaction(spend2(3 * FEE))
    pool = rpc.getrawmempool()
    assert replacement in pool and original not in pool


def test_reject_already_in_chain(funded: BitcoinRpc, coin: tuple[Utxo, Key]) -> None:
    rpc = funded
    utxo, key = coin
    hexstring = signed_p2wpkh(tx_spending([utxo], [(utxo.spk, utxo.value - FEE)]), [(utxo, key)])
    txid = rpc.sendrawtransaction(hexstring)
    assert rpc.sendrawtransaction(hexstring) == txid  # already in the mempool: accepted again
    mine(rpc)
    with pytest.raises(RpcVerifyAlreadyInChain) as info:
        rpc.sendrawtransaction(hexstring)
    # Core 28 renamed the message; earlier versions said "Transaction already in block chain".
    assert info.value.message in ("Transaction outputs already in utxo set", "Transaction already in block chain")


def test_reject_nonstandard_outputs(funded: BitcoinRpc, coin: tuple[Utxo, Key]) -> None:
    utxo, key = coin
    nonstandard = tx_spending([utxo], [(b"\x51\x51", utxo.value - FEE)])  # OP_1 OP_1
    expect_reject(funded, signed_p2wpkh(nonstandard, [(utxo, key)]), RpcVerifyRejected, "scriptpubkey")
    dust = tx_spending([utxo], [(utxo.spk, 100), (utxo.spk, utxo.value - FEE - 100)])
    expect_reject(funded, signed_p2wpkh(dust, [(utxo, key)]), RpcVerifyRejected, "dust")


def test_reject_bad_signature_and_garbage(chain: Mainchain, funded: BitcoinRpc, coin: tuple[Utxo, Key]) -> None:
    utxo, key = coin
    tx = tx_spending([utxo], [(utxo.spk, utxo.value - FEE)])
    wrong_key = Key()
    code = b"\x76\xa9\x14" + hash160(key.pub) + b"\x88\xac"
    forged = set_witnesses(tx, [[wrong_key.sign(segwit_digest(tx, 0, code, utxo.value)), key.pub]])
    expect_script_failure(chain, forged, EVAL_FALSE, NULLFAIL)
    # P2WPKH with a witness of the wrong shape.
    expect_script_failure(chain, set_witnesses(tx, [[key.pub]]), "Witness program hash mismatch")
    with pytest.raises(RpcDeserializationError, match="TX decode failed"):
        funded.sendrawtransaction("00112233")


def test_testmempoolaccept_shapes(funded: BitcoinRpc, coin: tuple[Utxo, Key]) -> None:
    utxo, key = coin
    good = signed_p2wpkh(tx_spending([utxo], [(utxo.spk, utxo.value - FEE)]), [(utxo, key)])
    [ok] = funded.testmempoolaccept([good])
    assert {"txid", "wtxid", "allowed", "vsize", "fees"} <= set(ok)
    assert ok["allowed"] is True and {"base", "effective-feerate", "effective-includes"} <= set(ok["fees"])
    assert ok["txid"] not in funded.getrawmempool()  # a test only
    [capped] = funded.testmempoolaccept([good], Decimal("0.00000001"))
    assert capped["allowed"] is False and capped["reject-reason"] == "max-fee-exceeded"
    with pytest.raises(RpcVerifyError, match="Fee exceeds maximum"):
        funded.sendrawtransaction(good, Decimal("0.00000001"))


def test_scantxoutset_finds_outputs_without_a_wallet(funded: BitcoinRpc) -> None:
    rpc = funded
    watched = multisig(1, [Key()])
    utxo = fund(rpc, p2wsh(watched), 300_000)
    desc = f"addr({address(p2wsh(watched))})"
    result = rpc.call("scantxoutset", "start", [desc])
    assert result["success"] is True and result["height"] == rpc.getblockcount()
    [found] = result["unspents"]
    assert (found["txid"], found["vout"], sats(found["amount"])) == (utxo.txid, utxo.vout, 300_000)
    assert found["scriptPubKey"] == p2wsh(watched).hex() and sats(result["total_amount"]) == 300_000
    raw = rpc.call("scantxoutset", "start", [{"desc": f"raw({p2wsh(watched).hex()})"}])
    assert [u["txid"] for u in raw["unspents"]] == [utxo.txid]


def test_estimatesmartfee_shape(funded: BitcoinRpc) -> None:
    result = funded.estimatesmartfee(6)
    assert "blocks" in result
    if "feerate" in result:
        assert result["feerate"] >= Decimal("0.00001")
    else:
        assert result["errors"]
    with pytest.raises(RpcInvalidParameter):
        funded.estimatesmartfee(0)


def test_network_info(rpc: BitcoinRpc) -> None:
    info = rpc.getnetworkinfo()
    assert isinstance(info["version"], int) and info["relayfee"] == Decimal("0.00001000")


# --- the protocol ----------------------------------------------------------------------------------------


def test_unknown_method(rpc: BitcoinRpc) -> None:
    with pytest.raises(RpcMethodNotFound) as info:
        rpc.call("nosuchmethod")
    assert info.value.rpc_code == -32601 and info.value.message == "Method not found"


def test_wrong_credentials(chain: Mainchain, rpc: BitcoinRpc) -> None:
    url = rpc.url
    with BitcoinRpc(url, user="nobody", password="wrong", timeout=10) as bad, pytest.raises(RpcAuthError):
        bad.getblockcount()
    # No Authorization header at all: 401 with a Basic challenge.
    response = httpx.post(url, content=b'{"method":"getblockcount","params":[],"id":1}', timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="jsonrpc"'


def _raw_post(rpc: BitcoinRpc, body: bytes) -> httpx.Response:
    headers = rpc._p.headers()
    return httpx.post(rpc.url, content=body, headers=headers, timeout=10)


def test_malformed_bodies(rpc: BitcoinRpc) -> None:
    # Core 28, JSON-RPC 1.x: a body that is not JSON is HTTP 500 with error -32700.
    response = _raw_post(rpc, b"this is not json")
    assert response.status_code == 500
    assert response.json() == {"result": None, "error": {"code": -32700, "message": "Parse error"}, "id": None}
    # An object without a method is an invalid request: HTTP 400.
    response = _raw_post(rpc, b'{"id": 7}')
    assert response.status_code == 400
    assert response.json()["error"] == {"code": -32600, "message": "Missing method"}
    assert response.json()["id"] == 7
    # An unknown method over JSON-RPC 1.x: HTTP 404 with the error object.
    response = _raw_post(rpc, b'{"method": "nosuchmethod", "params": [], "id": 8}')
    assert response.status_code == 404 and response.json()["error"]["code"] == -32601


def test_json_rpc_2_replies(rpc: BitcoinRpc) -> None:
    response = _raw_post(rpc, b'{"jsonrpc": "2.0", "method": "nosuchmethod", "params": [], "id": 1}')
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": 1}
    batch = _raw_post(rpc, b'[{"method": "getblockcount", "id": 1}, {"method": "nosuchmethod", "id": 2}]')
    assert batch.status_code == 200
    replies = {r["id"]: r for r in batch.json()}
    assert replies[1]["error"] is None and replies[2]["error"]["code"] == -32601


def test_named_parameters_and_type_errors(rpc: BitcoinRpc) -> None:
    assert rpc.call_named("getblockhash", {"height": 0}) == rpc.getblockhash(0)
    with pytest.raises(RpcError) as info:
        rpc.call("getblockhash", "zero")
    assert info.value.rpc_code == -3
    with pytest.raises(RpcInvalidParameter, match="Unknown named parameter"):
        rpc.call_named("getblockhash", {"heigth": 0})


def test_amounts_are_exact(funded: BitcoinRpc) -> None:
    rpc = funded
    receiver = rpc.getnewaddress()
    txid = rpc.sendtoaddress(receiver, Decimal("0.12345678"), fee_rate=2)
    out = [o for o in rpc.getrawtransaction(txid, True)["vout"] if o["scriptPubKey"].get("address") == receiver]
    assert [o["value"] for o in out] == [Decimal("0.12345678")]
    assert isinstance(out[0]["value"], Decimal)
