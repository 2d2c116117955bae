"""The RPC methods: Bitcoin Core's names, parameters (positional or named),
result shapes, error codes and messages, for the subset this project uses.

| group      | methods                                                                             |
|------------|-------------------------------------------------------------------------------------|
| blockchain | getblockchaininfo getblockcount getbestblockhash getblockhash getblockheader        |
|            | getblock getchaintips gettxout gettxoutproof verifytxoutproof invalidateblock       |
|            | reconsiderblock getmempoolinfo getrawmempool getmempoolentry scantxoutset           |
|            | (scantxoutset: addr() and raw() descriptors only)                                   |
| rawtx      | getrawtransaction sendrawtransaction testmempoolaccept decoderawtransaction         |
|            | decodescript                                                                        |
| mining     | generatetoaddress generateblock submitblock estimatesmartfee                        |
| util/net   | getnetworkinfo validateaddress setmocktime uptime help stop                         |
| wallet     | getnewaddress getrawchangeaddress sendtoaddress getbalance getbalances listunspent   |
|            | getaddressinfo getwalletinfo listwallets                                            |

Amounts are JSON numbers with eight decimals (as Core prints them); requests
are parsed with ``Decimal`` so amounts are exact. The node behaves as
``bitcoind -regtest -txindex=1`` (getrawtransaction finds any confirmed
transaction). Deviations from Core are listed in the package docstring.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .address import AddressError, address_to_script, p2sh_script, script_to_address, witness_program, witness_script
from .chain import BlockEntry, Coin, Kind, ValidationError
from .mempool import fee_for, signals_rbf
from .merkle import MerkleBlock
from .node import Node
from .primitives import (
    COIN,
    MAX_MONEY,
    Block,
    DeserializationError,
    OutPoint,
    Transaction,
    TxOut,
    bits_to_target,
    difficulty,
    hash160,
    hash_to_hex,
    hex_to_hash,
    sha256,
)
from .script import TxoutType, descriptor_checksum, is_unspendable, script_to_asm, solve, with_checksum
from .wallet import ADDRESS_TYPES, Wallet, WalletError

# Core's RPC error codes (src/rpc/protocol.h).
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_INVALID_PARAMS = -32602
RPC_INTERNAL_ERROR = -32603
RPC_PARSE_ERROR = -32700
RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_WALLET_ERROR = -4
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_WALLET_INSUFFICIENT_FUNDS = -6
RPC_INVALID_PARAMETER = -8
RPC_WALLET_NOT_FOUND = -18
RPC_DESERIALIZATION_ERROR = -22
RPC_VERIFY_ERROR = -25
RPC_VERIFY_REJECTED = -26
RPC_VERIFY_ALREADY_IN_CHAIN = -27
RPC_IN_WARMUP = -28
RPC_WALLET_INVALID_LABEL_NAME = -11

CORE_VERSION = 280000  # the Bitcoin Core release whose RPC behaviour this follows
SUBVERSION = "/regtest-standin:0.1.0/"
WALLET_NAME = ""


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Amount:
    """Satoshis, written to JSON as BTC with exactly eight decimals."""

    __slots__ = ("sats",)

    def __init__(self, sats: int) -> None:
        self.sats = sats

    def __repr__(self) -> str:
        sign = "-" if self.sats < 0 else ""
        q, r = divmod(abs(self.sats), COIN)
        return f"{sign}{q}.{r:08d}"


def dumps(obj: Any) -> str:
    """JSON with Amounts as bare numbers (json cannot emit raw number text)."""
    parts: list[str] = []

    def enc(o: Any) -> None:
        if isinstance(o, Amount):
            parts.append(repr(o))
        elif isinstance(o, dict):
            parts.append("{")
            for i, (k, v) in enumerate(o.items()):
                if i:
                    parts.append(",")
                parts.append(json.dumps(str(k)))
                parts.append(":")
                enc(v)
            parts.append("}")
        elif isinstance(o, list | tuple):
            parts.append("[")
            for i, v in enumerate(o):
                if i:
                    parts.append(",")
                enc(v)
            parts.append("]")
        elif isinstance(o, Decimal):
            parts.append(str(o))
        elif isinstance(o, float):
            parts.append(f"{o:.16g}")  # UniValue prints doubles with 16 significant digits
        else:
            parts.append(json.dumps(o))

    enc(obj)
    return "".join(parts)


# --- parameters ------------------------------------------------------------------------------

_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int, num, str, bool, arr, obj, any
    default: Any = _REQUIRED
    alias: str | None = None  # Core's "name|alias" (an older name still accepted)


_JSON_TYPE = {
    "int": "number",
    "num": "number",
    "str": "string",
    "bool": "bool",
    "arr": "array",
    "obj": "object",
}


def _json_type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float | Decimal):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _check_type(p: Param, v: Any) -> Any:
    ok = {
        "int": lambda x: (
            (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, Decimal) and x == x.to_integral())
        ),
        "num": lambda x: isinstance(x, int | Decimal) and not isinstance(x, bool),
        "str": lambda x: isinstance(x, str),
        "bool": lambda x: isinstance(x, bool),
        "arr": lambda x: isinstance(x, list),
        "obj": lambda x: isinstance(x, dict),
    }.get(p.kind)
    if ok is not None and not ok(v):
        raise RpcError(
            RPC_TYPE_ERROR, f"JSON value of type {_json_type_name(v)} is not of expected type {_JSON_TYPE[p.kind]}"
        )
    if p.kind == "int" and isinstance(v, Decimal):
        return int(v)
    return v


Handler = Callable[..., Any]


@dataclass(frozen=True)
class Method:
    name: str
    params: tuple[Param, ...]
    handler: Handler
    wallet: bool

    def usage(self) -> str:
        parts = [self.name]
        optional = [p for p in self.params if p.default is not _REQUIRED]
        parts += [p.name for p in self.params if p.default is _REQUIRED]
        if optional:
            parts.append("( " + " ".join(p.name for p in optional) + " )")
        return " ".join(parts)


METHODS: dict[str, Method] = {}


def rpc(name: str, *params: Param, wallet: bool = False) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name] = Method(name, params, fn, wallet)
        return fn

    return register


def dispatch(node: Node, method: str, params: Any, wallet_name: str | None = None) -> Any:
    """Run one RPC call: the -28/-32601/-1/-3/-8 checks Core makes, then the method."""
    if not node.ready:  # Core answers -28 before it even looks the method up
        raise RpcError(RPC_IN_WARMUP, node.warmup_status)
    m = METHODS.get(method)
    if m is None:
        raise RpcError(RPC_METHOD_NOT_FOUND, "Method not found")
    if wallet_name is not None and wallet_name != WALLET_NAME:
        raise RpcError(RPC_WALLET_NOT_FOUND, "Requested wallet does not exist or is not loaded")
    args: list[Any] = []
    if params is None:
        params = []
    if isinstance(params, dict):
        known = {p.name for p in m.params} | {p.alias for p in m.params if p.alias}
        unknown = [k for k in params if k not in known]
        if unknown:
            raise RpcError(RPC_INVALID_PARAMETER, f"Unknown named parameter {unknown[0]}")
        params = {next(p.name for p in m.params if k in (p.name, p.alias)): v for k, v in params.items()}
        values = [params.get(p.name) for p in m.params]
        present = [p.name in params for p in m.params]
    else:
        if len(params) > len(m.params):
            raise RpcError(RPC_MISC_ERROR, m.usage())
        values = list(params) + [None] * (len(m.params) - len(params))
        present = [i < len(params) for i in range(len(m.params))]
    for p, v, given in zip(m.params, values, present, strict=True):
        if not given or v is None:
            if p.default is _REQUIRED:
                raise RpcError(RPC_MISC_ERROR, m.usage())
            args.append(p.default)
        else:
            args.append(_check_type(p, v))
    with node.lock:
        return m.handler(node, *args)


# --- helpers -------------------------------------------------------------------------------------


def parse_hash(v: Any, name: str) -> bytes:
    if not isinstance(v, str):
        raise RpcError(RPC_TYPE_ERROR, f"JSON value of type {_json_type_name(v)} is not of expected type string")
    if len(v) != 64:
        raise RpcError(RPC_INVALID_PARAMETER, f"{name} must be of length 64 (not {len(v)}, for '{v}')")
    try:
        return hex_to_hash(v)
    except ValueError:
        raise RpcError(RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{v}')") from None


def parse_hex(v: str, name: str) -> bytes:
    try:
        if len(v) % 2:
            raise ValueError
        return bytes.fromhex(v)
    except ValueError:
        raise RpcError(RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{v}')") from None


_FIXED_POINT = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$")


def amount_from_value(v: Any) -> int:
    """Core's AmountFromValue: a number or a string, at most 8 decimals, in range."""
    if isinstance(v, bool) or not isinstance(v, int | Decimal | str | float):
        raise RpcError(RPC_TYPE_ERROR, "Amount is not a number or string")
    text = str(v)
    if not _FIXED_POINT.match(text):
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount")
    try:
        d = Decimal(text) * COIN
    except InvalidOperation:
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount") from None
    if d != d.to_integral_value():
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount")
    sats = int(d)
    if not 0 <= sats <= MAX_MONEY:
        raise RpcError(RPC_TYPE_ERROR, "Amount out of range")
    return sats


def feerate_from_value(v: Any) -> int:
    """A BTC/kvB amount as sat/kvB."""
    return amount_from_value(v)


def decode_tx(hexstr: str) -> Transaction:
    try:
        return Transaction.from_bytes(bytes.fromhex(hexstr))
    except (ValueError, DeserializationError):
        raise RpcError(
            RPC_DESERIALIZATION_ERROR, "TX decode failed. Make sure the tx has at least one input."
        ) from None


def script_json(node: Node, script: bytes, *, with_desc: bool = True) -> dict[str, Any]:
    """ScriptToUniv(include_hex, include_address): asm, desc, hex, address, type."""
    sol = solve(script)
    out: dict[str, Any] = {"asm": script_to_asm(script)}
    if with_desc:
        out["desc"] = infer_descriptor(node, script)
    out["hex"] = script.hex()
    address = script_to_address(script, node.params)
    if address is not None:
        out["address"] = address
    out["type"] = sol.kind.value
    return out


def infer_descriptor(node: Node, script: bytes) -> str:
    sol = solve(script)
    address = script_to_address(script, node.params)
    if sol.kind is TxoutType.PUBKEY:
        return with_checksum(f"pk({sol.data[0].hex()})")
    if sol.kind is TxoutType.MULTISIG:
        keys = ",".join(k.hex() for k in sol.data)
        return with_checksum(f"multi({sol.required},{keys})")
    if address is not None:
        return with_checksum(f"addr({address})")
    return with_checksum(f"raw({script.hex()})")


def tx_json(
    node: Node, tx: Transaction, *, include_hex: bool, undo: list[Coin] | None = None, fee: int | None = None
) -> dict[str, Any]:
    """Core's TxToUniv."""
    vin: list[dict[str, Any]] = []
    for i, txin in enumerate(tx.vin):
        item: dict[str, Any] = {}
        if tx.is_coinbase():
            item["coinbase"] = txin.script_sig.hex()
        else:
            item["txid"] = hash_to_hex(txin.prevout.txid)
            item["vout"] = txin.prevout.n
            item["scriptSig"] = {"asm": script_to_asm(txin.script_sig, True), "hex": txin.script_sig.hex()}
        if txin.witness:
            item["txinwitness"] = [w.hex() for w in txin.witness]
        if undo is not None and not tx.is_coinbase():
            coin = undo[i]
            item["prevout"] = {
                "generated": coin.coinbase,
                "height": coin.height,
                "value": Amount(coin.out.value),
                "scriptPubKey": script_json(node, coin.out.script_pubkey),
            }
        item["sequence"] = txin.sequence
        vin.append(item)
    vout = [
        {"value": Amount(o.value), "n": n, "scriptPubKey": script_json(node, o.script_pubkey)}
        for n, o in enumerate(tx.vout)
    ]
    out: dict[str, Any] = {
        "txid": tx.txid_hex,
        "hash": tx.wtxid_hex,
        "version": tx.version,
        "size": tx.size,
        "vsize": tx.vsize,
        "weight": tx.weight,
        "locktime": tx.locktime,
        "vin": vin,
        "vout": vout,
    }
    if fee is not None and not tx.is_coinbase():
        out["fee"] = Amount(fee)
    if include_hex:
        out["hex"] = tx.serialize().hex()
    return out


def lookup_block(node: Node, v: Any, name: str = "blockhash") -> BlockEntry:
    h = parse_hash(v, name)
    entry = node.chain.index.get(h)
    if entry is None:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
    return entry


def header_json(node: Node, entry: BlockEntry) -> dict[str, Any]:
    """Core's blockheaderToJSON."""
    h = entry.header
    out: dict[str, Any] = {
        "hash": h.hash_hex,
        "confirmations": node.chain.confirmations(entry),
        "height": entry.height,
        "version": h.version,
        "versionHex": f"{h.version & 0xFFFFFFFF:08x}",
        "merkleroot": hash_to_hex(h.merkle_root),
        "time": h.time,
        "mediantime": entry.mtp,
        "nonce": h.nonce,
        "bits": f"{h.bits:08x}",
        "difficulty": difficulty(h.bits),
        "chainwork": f"{entry.chainwork:064x}",
        "nTx": entry.n_tx,
    }
    if entry.prev is not None:
        out["previousblockhash"] = entry.prev.header.hash_hex
    nxt = node.chain.next_in_chain(entry)
    if nxt is not None:
        out["nextblockhash"] = nxt.header.hash_hex
    return out


def parse_address(node: Node, address: str, message: str | None = None) -> bytes:
    try:
        return address_to_script(address, node.params)
    except AddressError as e:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, message or str(e)) from None


def require_wallet(node: Node) -> Wallet:
    if node.wallet is None:
        raise RpcError(RPC_WALLET_NOT_FOUND, "Requested wallet does not exist or is not loaded")
    return node.wallet


# --- blockchain ---------------------------------------------------------------------------------


@rpc("getblockchaininfo")
def getblockchaininfo(node: Node) -> Any:
    chain = node.chain
    tip = chain.tip
    return {
        "chain": node.params.name,
        "blocks": chain.height,
        "headers": chain.height,
        "bestblockhash": tip.header.hash_hex,
        "bits": f"{tip.header.bits:08x}",
        "target": f"{_target(tip.header.bits):064x}",
        "difficulty": difficulty(tip.header.bits),
        "time": tip.header.time,
        "mediantime": tip.mtp,
        "verificationprogress": 1,
        "initialblockdownload": node.initial_block_download(),
        "chainwork": f"{tip.chainwork:064x}",
        "size_on_disk": node.store.size_on_disk() if node.store else 0,
        "pruned": False,
        "warnings": [],
    }


def _target(bits: int) -> int:
    return bits_to_target(bits)[0]


@rpc("getblockcount")
def getblockcount(node: Node) -> Any:
    return node.chain.height


@rpc("getbestblockhash")
def getbestblockhash(node: Node) -> Any:
    return node.chain.tip.header.hash_hex


@rpc("getblockhash", Param("height", "int"))
def getblockhash(node: Node, height: int) -> Any:
    if not 0 <= height <= node.chain.height:
        raise RpcError(RPC_INVALID_PARAMETER, "Block height out of range")
    return node.chain.active[height].header.hash_hex


@rpc("getblockheader", Param("blockhash", "str"), Param("verbose", "bool", True))
def getblockheader(node: Node, blockhash: str, verbose: bool) -> Any:
    entry = lookup_block(node, blockhash, "hash")
    if not verbose:
        return entry.header.serialize().hex()
    return header_json(node, entry)


def _verbosity(v: Any, default: int) -> int:
    if v is None:
        return default
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, Decimal) and v == v.to_integral():
        return int(v)
    raise RpcError(RPC_TYPE_ERROR, f"JSON value of type {_json_type_name(v)} is not of expected type number")


@rpc("getblock", Param("blockhash", "str"), Param("verbosity", "any", 1, alias="verbose"))
def getblock(node: Node, blockhash: str, verbosity: Any) -> Any:
    level = _verbosity(verbosity, 1)
    entry = lookup_block(node, blockhash)
    block = node.chain.blocks[entry.hash]
    if level <= 0:
        return block.serialize().hex()
    out = header_json(node, entry)
    out["strippedsize"] = block.stripped_size
    out["size"] = block.size
    out["weight"] = block.weight
    if level == 1:
        out["tx"] = [tx.txid_hex for tx in block.txs]
        return out
    undo = node.chain.undo.get(entry.hash)
    txs = []
    for pos, tx in enumerate(block.txs):
        coins = undo.spent[pos - 1] if undo and pos else None
        fee = undo.fees[pos - 1] if undo and pos else None
        txs.append(tx_json(node, tx, include_hex=True, undo=coins if level >= 3 else None, fee=fee))
    out["tx"] = txs
    return out


@rpc("getchaintips")
def getchaintips(node: Node) -> Any:
    chain = node.chain
    tips = [e for e in chain.index.values() if not e.children or e is chain.tip]
    out = []
    for e in sorted(tips, key=lambda t: -t.height):
        fork = e
        while not chain.in_active_chain(fork):
            assert fork.prev is not None
            fork = fork.prev
        if e is chain.tip:
            status = "active"
        elif e.invalid:
            status = "invalid"
        else:
            status = "valid-fork"
        out.append(
            {"height": e.height, "hash": e.header.hash_hex, "branchlen": e.height - fork.height, "status": status}
        )
    return out


@rpc("gettxout", Param("txid", "str"), Param("n", "int"), Param("include_mempool", "bool", True))
def gettxout(node: Node, txid: str, n: int, include_mempool: bool) -> Any:
    op = OutPoint(parse_hash(txid, "txid"), n) if 0 <= n <= 0xFFFFFFFF else None
    if op is None:
        return None
    chain = node.chain
    if include_mempool:
        if op in node.mempool.spenders:
            return None
        coin = node.mempool.coin(op)
    else:
        coin = chain.utxo.get(op)
    if coin is None:
        return None
    in_mempool = include_mempool and op.txid in node.mempool.entries
    return {
        "bestblock": chain.tip.header.hash_hex,
        "confirmations": 0 if in_mempool else chain.height - coin.height + 1,
        "value": Amount(coin.out.value),
        "scriptPubKey": script_json(node, coin.out.script_pubkey),
        "coinbase": coin.coinbase,
    }


@rpc("gettxoutproof", Param("txids", "arr"), Param("blockhash", "str", None))
def gettxoutproof(node: Node, txids: list[Any], blockhash: str | None) -> Any:
    if not txids:
        raise RpcError(RPC_INVALID_PARAMETER, "Parameter 'txids' cannot be empty")
    wanted: list[bytes] = []
    for t in txids:
        h = parse_hash(t, "txid")
        if h in wanted:
            raise RpcError(RPC_INVALID_PARAMETER, f"Invalid parameter, duplicated txid: {t}")
        wanted.append(h)
    chain = node.chain
    if blockhash is not None:
        entry = lookup_block(node, blockhash)
    else:
        # Core looks in the UTXO set, then the transaction index; this node always has one.
        found = chain.find_tx(wanted[0])
        if found is None:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not yet in block")
        entry = found[1]
    block = chain.blocks[entry.hash]
    ids = [tx.txid for tx in block.txs]
    if any(w not in ids for w in wanted):
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Not all transactions found in specified or retrieved block")
    return MerkleBlock.build(block.header, ids, set(wanted)).serialize().hex()


@rpc("verifytxoutproof", Param("proof", "str"))
def verifytxoutproof(node: Node, proof: str) -> Any:
    raw = parse_hex(proof, "proof")
    try:
        mb = MerkleBlock.from_bytes(raw)
    except DeserializationError as e:
        # Core's stream throws, and its RPC server reports any std::exception as -1.
        raise RpcError(RPC_MISC_ERROR, f"DataStream::read(): {e}: iostream error") from None
    extracted = mb.tree.extract_matches()
    if extracted is None or extracted[0] != mb.header.merkle_root:
        return []
    entry = node.chain.index.get(mb.header.hash)
    if entry is None or not node.chain.in_active_chain(entry) or entry.n_tx == 0:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found in chain")
    if entry.n_tx != mb.tree.n_transactions:
        return []
    return [hash_to_hex(h) for h in extracted[1]]


@rpc("invalidateblock", Param("blockhash", "str"))
def invalidateblock(node: Node, blockhash: str) -> Any:
    entry = lookup_block(node, blockhash)
    if entry.prev is None:
        raise RpcError(RPC_INVALID_PARAMETER, "Cannot invalidate genesis block")
    node.invalidate(entry.hash)
    return None


@rpc("reconsiderblock", Param("blockhash", "str"))
def reconsiderblock(node: Node, blockhash: str) -> Any:
    entry = lookup_block(node, blockhash)
    node.reconsider(entry.hash)
    return None


# --- mempool ----------------------------------------------------------------------------------------


def _mempool_entry_json(node: Node, txid: bytes) -> dict[str, Any]:
    pool = node.mempool
    e = pool.entries[txid]
    anc = pool.ancestors(txid)
    desc = pool.descendants(txid)
    anc_size = e.vsize + sum(pool.entries[a].vsize for a in anc)
    desc_size = e.vsize + sum(pool.entries[d].vsize for d in desc)
    return {
        "vsize": e.vsize,
        "weight": e.tx.weight,
        "time": e.time,
        "height": e.height,
        "descendantcount": len(desc) + 1,
        "descendantsize": desc_size,
        "ancestorcount": len(anc) + 1,
        "ancestorsize": anc_size,
        "wtxid": e.tx.wtxid_hex,
        "fees": {
            "base": Amount(e.fee),
            "modified": Amount(e.fee),
            "ancestor": Amount(e.fee + sum(pool.entries[a].fee for a in anc)),
            "descendant": Amount(e.fee + sum(pool.entries[d].fee for d in desc)),
        },
        "depends": sorted(hash_to_hex(p) for p in e.parents),
        "spentby": sorted(hash_to_hex(c) for c in e.children),
        # Core reports signalling (own or inherited), whatever -mempoolfullrbf says.
        "bip125-replaceable": signals_rbf(e.tx) or any(signals_rbf(pool.entries[a].tx) for a in anc),
        "unbroadcast": False,
    }


@rpc("getrawmempool", Param("verbose", "bool", False), Param("mempool_sequence", "bool", False))
def getrawmempool(node: Node, verbose: bool, mempool_sequence: bool) -> Any:
    if verbose and mempool_sequence:
        raise RpcError(RPC_INVALID_PARAMETER, "Verbose results cannot contain mempool sequence values.")
    pool = node.mempool
    if verbose:
        return {hash_to_hex(t): _mempool_entry_json(node, t) for t in pool.entries}
    txids = [hash_to_hex(t) for t in pool.entries]
    if mempool_sequence:
        return {"txids": txids, "mempool_sequence": pool.sequence}
    return txids


@rpc("getmempoolentry", Param("txid", "str"))
def getmempoolentry(node: Node, txid: str) -> Any:
    h = parse_hash(txid, "txid")
    if h not in node.mempool.entries:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
    return _mempool_entry_json(node, h)


@rpc("getmempoolinfo")
def getmempoolinfo(node: Node) -> Any:
    pool = node.mempool
    params = node.params
    return {
        "loaded": True,
        "size": len(pool.entries),
        "bytes": sum(e.vsize for e in pool.entries.values()),
        "usage": sum(e.tx.size * 4 for e in pool.entries.values()),
        "total_fee": Amount(sum(e.fee for e in pool.entries.values())),
        "maxmempool": 300_000_000,
        "mempoolminfee": Amount(params.min_relay_feerate),
        "minrelaytxfee": Amount(params.min_relay_feerate),
        "incrementalrelayfee": Amount(params.incremental_relay_feerate),
        "unbroadcastcount": 0,
        "fullrbf": pool.full_rbf,
    }


# --- raw transactions ------------------------------------------------------------------------------


@rpc(
    "getrawtransaction",
    Param("txid", "str"),
    Param("verbosity", "any", 0, alias="verbose"),
    Param("blockhash", "str", None),
)
def getrawtransaction(node: Node, txid: str, verbosity: Any, blockhash: str | None) -> Any:
    level = _verbosity(verbosity, 0)
    h = parse_hash(txid, "parameter 1")
    chain = node.chain
    if h == node.params.genesis.txs[0].txid:
        raise RpcError(
            RPC_INVALID_ADDRESS_OR_KEY,
            "The genesis block coinbase is not considered an ordinary transaction and cannot be retrieved",
        )
    entry: BlockEntry | None = None
    tx: Transaction | None = None
    in_active: bool | None = None
    if blockhash is not None:
        entry = lookup_block(node, blockhash, "parameter 3")
        block = chain.blocks[entry.hash]
        tx = next((t for t in block.txs if t.txid == h), None)
        in_active = chain.in_active_chain(entry)
        if tx is None:
            raise RpcError(
                RPC_INVALID_ADDRESS_OR_KEY,
                "No such transaction found in the provided block. Use gettransaction for wallet transactions.",
            )
    else:
        pool_entry = node.mempool.entries.get(h)
        if pool_entry is not None:
            tx = pool_entry.tx
        else:
            found = chain.find_tx(h)
            if found is not None:
                tx, entry = found
    if tx is None:
        raise RpcError(
            RPC_INVALID_ADDRESS_OR_KEY,
            "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
        )
    if level <= 0:
        return tx.serialize().hex()
    undo_coins = None
    fee = None
    if level >= 2 and entry is not None and not tx.is_coinbase():
        undo = chain.undo.get(entry.hash)
        if undo is not None:
            pos = [t.txid for t in chain.blocks[entry.hash].txs].index(h)
            undo_coins, fee = undo.spent[pos - 1], undo.fees[pos - 1]
    out: dict[str, Any] = {}
    if in_active is not None:
        out["in_active_chain"] = in_active
    out.update(tx_json(node, tx, include_hex=True, undo=undo_coins, fee=fee))
    if entry is not None:
        out["blockhash"] = entry.header.hash_hex
        if chain.in_active_chain(entry):
            out["confirmations"] = chain.height - entry.height + 1
            out["time"] = entry.header.time
            out["blocktime"] = entry.header.time
        else:
            out["confirmations"] = 0
    return out


@rpc("decoderawtransaction", Param("hexstring", "str"), Param("iswitness", "bool", None))
def decoderawtransaction(node: Node, hexstring: str, iswitness: bool | None) -> Any:
    tx = decode_tx(hexstring)
    return tx_json(node, tx, include_hex=False)


@rpc("decodescript", Param("hexstring", "str"))
def decodescript(node: Node, hexstring: str) -> Any:
    script = parse_hex(hexstring, "argument")
    out = script_json(node, script)
    kind = solve(script).kind
    # Core offers the P2SH and P2WSH wrappings of scripts that may be wrapped.
    if kind not in (TxoutType.SCRIPTHASH, TxoutType.WITNESS_V0_SCRIPTHASH, TxoutType.WITNESS_V1_TAPROOT):
        out["p2sh"] = script_to_address(p2sh_script(hash160(script)), node.params)
        if kind not in (TxoutType.WITNESS_V0_KEYHASH, TxoutType.WITNESS_UNKNOWN, TxoutType.NULL_DATA):
            segwit = witness_script(0, sha256(script))
            out["segwit"] = script_json(node, segwit)
            out["segwit"]["p2sh-segwit"] = script_to_address(p2sh_script(hash160(segwit)), node.params)
    return out


def _max_fee(feerate: int, vsize: int) -> int:
    return fee_for(feerate, vsize) if feerate else 0


@rpc(
    "sendrawtransaction", Param("hexstring", "str"), Param("maxfeerate", "any", None), Param("maxburnamount", "any", 0)
)
def sendrawtransaction(node: Node, hexstring: str, maxfeerate: Any, maxburnamount: Any) -> Any:
    tx = decode_tx(hexstring)
    max_burn = amount_from_value(maxburnamount)
    for out in tx.vout:
        if is_unspendable(out.script_pubkey) and out.value > max_burn:
            raise RpcError(RPC_VERIFY_ERROR, "Unspendable output exceeds maximum configured by user (maxburnamount)")
    feerate = node.params.default_max_raw_tx_feerate if maxfeerate is None else feerate_from_value(maxfeerate)
    if node.already_in_utxo_set(tx):
        raise RpcError(RPC_VERIFY_ALREADY_IN_CHAIN, "Transaction outputs already in utxo set")
    if tx.txid in node.mempool.entries:
        return tx.txid_hex
    try:
        max_fee = _max_fee(feerate, tx.vsize)
        if max_fee:
            accepted = node.accept_to_mempool(tx, test_only=True)
            if accepted.fee > max_fee:
                raise RpcError(RPC_VERIFY_ERROR, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)")
        node.accept_to_mempool(tx)
    except ValidationError as err:
        code = RPC_VERIFY_ERROR if err.kind is Kind.MISSING_INPUTS else RPC_VERIFY_REJECTED
        raise RpcError(code, str(err)) from None
    return tx.txid_hex


@rpc("testmempoolaccept", Param("rawtxs", "arr"), Param("maxfeerate", "any", None))
def testmempoolaccept(node: Node, rawtxs: list[Any], maxfeerate: Any) -> Any:
    feerate = node.params.default_max_raw_tx_feerate if maxfeerate is None else feerate_from_value(maxfeerate)
    if not 1 <= len(rawtxs) <= 25:
        raise RpcError(RPC_INVALID_PARAMETER, "Array must contain between 1 and 25 transactions.")
    txs = []
    for raw in rawtxs:
        if not isinstance(raw, str):
            raise RpcError(RPC_TYPE_ERROR, f"JSON value of type {_json_type_name(raw)} is not of expected type string")
        try:
            txs.append(Transaction.from_bytes(bytes.fromhex(raw)))
        except (ValueError, DeserializationError):
            raise RpcError(
                RPC_DESERIALIZATION_ERROR, f"TX decode failed: {raw} Make sure the tx has at least one input."
            ) from None
    # A package is validated in order against a scratch copy of the mempool.
    pool = node.mempool
    scratch = pool.clone() if len(txs) > 1 else pool
    results: list[dict[str, Any]] = []
    stop = False
    for tx in txs:
        item: dict[str, Any] = {"txid": tx.txid_hex, "wtxid": tx.wtxid_hex}
        if stop:
            results.append(item)
            continue
        try:
            accepted = scratch.accept(tx, node.now(), test_only=len(txs) == 1)
        except ValidationError as err:
            item["allowed"] = False
            item["reject-reason"] = "missing-inputs" if err.kind is Kind.MISSING_INPUTS else err.reason
            item["reject-details"] = str(err)
            stop = True
            results.append(item)
            continue
        max_fee = _max_fee(feerate, accepted.vsize)
        if max_fee and accepted.fee > max_fee:
            item["allowed"] = False
            item["reject-reason"] = "max-fee-exceeded"
            stop = True
        else:
            item["allowed"] = True
            item["vsize"] = accepted.vsize
            item["fees"] = {
                "base": Amount(accepted.fee),
                "effective-feerate": Amount(accepted.fee * 1000 // accepted.vsize),
                "effective-includes": [tx.wtxid_hex],
            }
        results.append(item)
    return results


# --- mining -----------------------------------------------------------------------------------------


@rpc("generatetoaddress", Param("nblocks", "int"), Param("address", "str"), Param("maxtries", "int", 1_000_000))
def generatetoaddress(node: Node, nblocks: int, address: str, maxtries: int) -> Any:
    script = parse_address(node, address, "Error: Invalid address")
    if solve(script).kind is TxoutType.WITNESS_V1_TAPROOT:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address")  # see the package docstring
    try:
        return node.generate(script, nblocks, maxtries)
    except ValidationError as err:
        raise RpcError(RPC_INTERNAL_ERROR, f"ProcessNewBlock, block not accepted: {err}") from None


@rpc("generateblock", Param("output", "str"), Param("transactions", "arr"), Param("submit", "bool", True))
def generateblock(node: Node, output: str, transactions: list[Any], submit: bool) -> Any:
    script = parse_address(node, output, "Error: Invalid address")
    txs: list[Transaction] = []
    for item in transactions:
        if not isinstance(item, str):
            raise RpcError(RPC_TYPE_ERROR, "JSON value is not a string as expected")
        if len(item) == 64:
            h = hex_to_hash(item) if all(c in "0123456789abcdefABCDEF" for c in item) else b""
            entry = node.mempool.entries.get(h)
            if entry is None:
                raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Transaction {item} not in mempool.")
            txs.append(entry.tx)
        else:
            try:
                txs.append(Transaction.from_bytes(bytes.fromhex(item)))
            except (ValueError, DeserializationError):
                raise RpcError(RPC_DESERIALIZATION_ERROR, f"Transaction decode failed for {item}") from None
    fees = 0
    chain = node.chain
    template = chain.create_block(script, txs, 0, chain.next_block_time(node.now()))
    # The coinbase claims the fees only if the inputs are known; compute them on a trial run.
    fees = _block_fees(node, template)
    template = chain.create_block(script, txs, fees, chain.next_block_time(node.now()))
    solved = chain.solve(template, 1_000_000)
    if solved is None:
        raise RpcError(RPC_MISC_ERROR, "Failed to make block.")
    if not submit:
        try:
            _test_block_validity(node, solved)
        except ValidationError as err:
            raise RpcError(RPC_VERIFY_ERROR, f"TestBlockValidity failed: {err}") from None
        return {"hash": solved.hash_hex, "hex": solved.serialize().hex()}
    try:
        _test_block_validity(node, solved)
    except ValidationError as err:
        raise RpcError(RPC_VERIFY_ERROR, f"TestBlockValidity failed: {err}") from None
    _, failure = node.process_block(solved)
    if failure is not None:
        raise RpcError(RPC_INTERNAL_ERROR, "ProcessNewBlock, block not accepted")
    return {"hash": solved.hash_hex}


def _block_fees(node: Node, block: Block) -> int:
    coins: dict[OutPoint, TxOut] = {}
    fees = 0
    for tx in block.txs[1:]:
        value_in = 0
        for txin in tx.vin:
            out = coins.get(txin.prevout)
            if out is None:
                coin = node.chain.utxo.get(txin.prevout)
                if coin is None:
                    return 0  # the block will fail validation and say why
                out = coin.out
            value_in += out.value
        fees += max(0, value_in - sum(o.value for o in tx.vout))
        for n, o in enumerate(tx.vout):
            coins[OutPoint(tx.txid, n)] = o
    return fees


def _test_block_validity(node: Node, block: Block) -> None:
    """Core's TestBlockValidity: connect on a throwaway copy of the UTXO set."""
    chain = node.chain
    chain.check_block(block)
    chain.contextual_check_header(block.header, chain.tip, node.now())
    chain.contextual_check_block(block, chain.tip)
    saved_utxo = dict(chain.utxo)
    saved_index = dict(chain.txindex)
    entry = BlockEntry(block.header, chain.height + 1, chain.tip, chain.tip.chainwork, len(block.txs))
    entry.mtp = chain.tip.mtp
    try:
        chain.connect_block(block, entry)
    finally:
        if chain.tip is entry:
            chain.active.pop()
        chain.utxo = saved_utxo
        chain.txindex = saved_index
        chain.undo.pop(block.hash, None)


@rpc("submitblock", Param("hexdata", "str"), Param("dummy", "any", None))
def submitblock(node: Node, hexdata: str, dummy: Any) -> Any:
    try:
        block = Block.from_bytes(bytes.fromhex(hexdata))
    except (ValueError, DeserializationError):
        raise RpcError(RPC_DESERIALIZATION_ERROR, "Block decode failed") from None
    if not block.txs or not block.txs[0].is_coinbase():
        raise RpcError(RPC_DESERIALIZATION_ERROR, "Block does not start with a coinbase")
    known = node.chain.index.get(block.hash)
    if known is not None:
        return "duplicate-invalid" if known.invalid else "duplicate"
    _, failure = node.process_block(block)
    if failure is not None:
        return failure.reason
    entry = node.chain.index.get(block.hash)
    if entry is not None and not node.chain.in_active_chain(entry):
        return "inconclusive"
    return None


@rpc("estimatesmartfee", Param("conf_target", "int"), Param("estimate_mode", "str", "economical"))
def estimatesmartfee(node: Node, conf_target: int, estimate_mode: str) -> Any:
    if estimate_mode.lower() not in ("unset", "economical", "conservative"):
        raise RpcError(
            RPC_INVALID_PARAMETER,
            'Invalid estimate_mode parameter, must be one of: "unset", "economical", "conservative"',
        )
    if not 1 <= conf_target <= 1008:
        raise RpcError(RPC_INVALID_PARAMETER, "Invalid conf_target, must be between 1 and 1008")
    target = max(conf_target, 2)  # Core never answers for one block
    feerate = estimate_feerate(node)
    if feerate is None:
        return {"errors": ["Insufficient data or no feerate found"], "blocks": 0}
    return {"feerate": Amount(feerate), "blocks": target}


def estimate_feerate(node: Node) -> int | None:
    """sat/kvB: the fixed rate if configured, else the median fee rate of the
    transactions confirmed in the last 100 blocks (not Core's estimator), at
    least the minimum relay fee; None without data, as Core on a fresh chain."""
    if node.fixed_feerate is not None:
        return node.fixed_feerate
    chain = node.chain
    rates: list[int] = []
    for entry in chain.active[-100:]:
        undo = chain.undo.get(entry.hash)
        block = chain.blocks[entry.hash]
        if undo is None:
            continue
        for tx, fee in zip(block.txs[1:], undo.fees, strict=True):
            rates.append(fee * 1000 // tx.vsize)
    if not rates:
        return None
    rates.sort()
    return max(rates[len(rates) // 2], node.params.min_relay_feerate)


# --- util and network ------------------------------------------------------------------------------


@rpc("getnetworkinfo")
def getnetworkinfo(node: Node) -> Any:
    return {
        "version": CORE_VERSION,
        "subversion": SUBVERSION,
        "protocolversion": 70016,
        "localservices": "0000000000000409",
        "localservicesnames": ["NETWORK", "WITNESS", "NETWORK_LIMITED"],
        "localrelay": True,
        "timeoffset": 0,
        "networkactive": True,
        "connections": 0,
        "connections_in": 0,
        "connections_out": 0,
        "networks": [],
        "relayfee": Amount(node.params.min_relay_feerate),
        "incrementalfee": Amount(node.params.incremental_relay_feerate),
        "localaddresses": [],
        "warnings": ["This is a regtest stand-in for Bitcoin Core, not Bitcoin Core."],
    }


def _scan_script(node: Node, item: Any) -> tuple[str, bytes]:
    """A scan object's descriptor and script: ``addr(...)`` or ``raw(...)``, as a
    string or ``{"desc": ...}``; a checksum, if given, must match."""
    desc = item.get("desc") if isinstance(item, dict) else item
    if not isinstance(desc, str):
        raise RpcError(RPC_INVALID_PARAMETER, "Scan object needs to be either a string or an object")
    body, _, checksum = desc.partition("#")
    try:
        if checksum and descriptor_checksum(body) != checksum:
            raise RpcError(
                RPC_INVALID_ADDRESS_OR_KEY, f"Provided checksum '{checksum}' does not match computed checksum"
            )
    except ValueError:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Invalid descriptor: {desc}") from None
    if body.startswith("addr(") and body.endswith(")"):
        return with_checksum(body), parse_address(node, body[5:-1])
    if body.startswith("raw(") and body.endswith(")"):
        return with_checksum(body), parse_hex(body[4:-1], "raw script")
    # Key and script descriptors (wpkh, sh, multi, ...) are not implemented here.
    raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Only addr() and raw() descriptors are supported here: {desc}")


@rpc("scantxoutset", Param("action", "str"), Param("scanobjects", "arr", None))
def scantxoutset(node: Node, action: str, scanobjects: list[Any] | None) -> Any:
    """The UTXO set paying given scripts (no wallet needed): how a watchman finds
    the federation's outputs on a node it does not run a wallet on."""
    if action == "status":
        return None
    if action == "abort":
        return False
    if action != "start":
        raise RpcError(RPC_INVALID_PARAMETER, "Invalid action '" + action + "'")
    if scanobjects is None:
        raise RpcError(RPC_MISC_ERROR, "scanobjects argument is required for the start action")
    wanted = dict(_scan_script(node, item) for item in scanobjects)
    by_script = {script: desc for desc, script in wanted.items()}
    chain = node.chain
    unspents = []
    total = 0
    for op, coin in sorted(chain.utxo.items(), key=lambda kv: (kv[1].height, kv[0].txid, kv[0].n)):
        desc = by_script.get(coin.out.script_pubkey)
        if desc is None:
            continue
        total += coin.out.value
        unspents.append(
            {
                "txid": hash_to_hex(op.txid),
                "vout": op.n,
                "scriptPubKey": coin.out.script_pubkey.hex(),
                "desc": desc,
                "amount": Amount(coin.out.value),
                "coinbase": coin.coinbase,
                "height": coin.height,
                "blockhash": chain.active[coin.height].header.hash_hex,
                "confirmations": chain.height - coin.height + 1,
            }
        )
    return {
        "success": True,
        "txouts": len(chain.utxo),
        "height": chain.height,
        "bestblock": chain.tip.header.hash_hex,
        "unspents": unspents,
        "total_amount": Amount(total),
    }


@rpc("validateaddress", Param("address", "str"))
def validateaddress(node: Node, address: str) -> Any:
    try:
        script = address_to_script(address, node.params)
    except AddressError as e:
        return {"isvalid": False, "error_locations": [], "error": str(e)}
    out: dict[str, Any] = {"isvalid": True, "address": address, "scriptPubKey": script.hex()}
    wp = witness_program(script)
    out["isscript"] = solve(script).kind in (TxoutType.SCRIPTHASH, TxoutType.WITNESS_V0_SCRIPTHASH)
    out["iswitness"] = wp is not None
    if wp is not None:
        out["witness_version"] = wp[0]
        out["witness_program"] = wp[1].hex()
    return out


@rpc("setmocktime", Param("timestamp", "int"))
def setmocktime(node: Node, timestamp: int) -> Any:
    if timestamp < 0:
        raise RpcError(RPC_INVALID_PARAMETER, f"Mocktime cannot be negative: {timestamp}.")
    node.mocktime = timestamp
    return None


@rpc("uptime")
def uptime(node: Node) -> Any:
    return int(time.time() - node.started)


@rpc("help", Param("command", "str", None))
def help_(node: Node, command: str | None) -> Any:
    if command is not None:
        m = METHODS.get(command)
        if m is None:
            return f"help: unknown command: {command}"
        return m.usage()
    return "\n".join(sorted(m.usage() for m in METHODS.values()))


@rpc("stop")
def stop(node: Node) -> Any:
    node.stop_requested = True
    return "Regtest stand-in stopping"


# --- wallet ----------------------------------------------------------------------------------------------


def _address_type(v: str | None) -> str:
    if v is None:
        return "bech32"
    if v not in (*ADDRESS_TYPES, "bech32m"):
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Unknown address type '{v}'")
    if v == "bech32m":
        raise RpcError(RPC_WALLET_ERROR, "Error: This wallet has no available keys")  # see the package docstring
    return v


@rpc("getnewaddress", Param("label", "str", ""), Param("address_type", "str", None), wallet=True)
def getnewaddress(node: Node, label: str, address_type: str | None) -> Any:
    if label == "*":
        raise RpcError(RPC_WALLET_INVALID_LABEL_NAME, "Invalid label name")
    wallet = require_wallet(node)
    _, address = wallet.new_key(_address_type(address_type), label)
    return address


@rpc("getrawchangeaddress", Param("address_type", "str", None), wallet=True)
def getrawchangeaddress(node: Node, address_type: str | None) -> Any:
    wallet = require_wallet(node)
    _, address = wallet.new_key(_address_type(address_type), change=True)
    return address


def _wallet_feerate(node: Node, fee_rate: Any, conf_target: Any) -> int:
    if fee_rate is not None:
        # sat/vB, as Core's fee_rate argument.
        try:
            rate = Decimal(str(fee_rate))
        except InvalidOperation:
            raise RpcError(RPC_TYPE_ERROR, "Invalid amount") from None
        sat_per_kvb = int(rate * 1000)
        if sat_per_kvb < node.params.min_relay_feerate:
            raise RpcError(
                RPC_WALLET_ERROR,
                f"Fee rate ({rate:.3f} sat/vB) is lower than the minimum fee rate setting (1.000 sat/vB)",
            )
        return sat_per_kvb
    estimate = estimate_feerate(node)
    return estimate if estimate is not None else node.fallback_feerate


@rpc(
    "sendtoaddress",
    Param("address", "str"),
    Param("amount", "any"),
    Param("comment", "str", ""),
    Param("comment_to", "str", ""),
    Param("subtractfeefromamount", "bool", False),
    Param("replaceable", "bool", True),
    Param("conf_target", "int", None),
    Param("estimate_mode", "str", "unset"),
    Param("avoid_reuse", "bool", True),
    Param("fee_rate", "any", None),
    Param("verbose", "bool", False),
    wallet=True,
)
def sendtoaddress(
    node: Node,
    address: str,
    amount: Any,
    comment: str,
    comment_to: str,
    subtractfeefromamount: bool,
    replaceable: bool,
    conf_target: int | None,
    estimate_mode: str,
    avoid_reuse: bool,
    fee_rate: Any,
    verbose: bool,
) -> Any:
    wallet = require_wallet(node)
    script = parse_address(node, address, None)
    sats = amount_from_value(amount)
    if sats <= 0:
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount for send")
    feerate = _wallet_feerate(node, fee_rate, conf_target)
    try:
        tx, _fee = wallet.create_transaction(
            node.chain,
            node.mempool,
            [TxOut(sats, script)],
            feerate,
            {0} if subtractfeefromamount else set(),
            replaceable,
        )
    except WalletError as e:
        raise RpcError(e.code, e.message) from None
    try:
        node.accept_to_mempool(tx)
    except ValidationError as err:
        raise RpcError(RPC_WALLET_ERROR, f"Transaction rejected: {err}") from None
    if verbose:
        return {"txid": tx.txid_hex, "fee_reason": "Fallback fee" if fee_rate is None else "User-specified fee"}
    return tx.txid_hex


def _balances(node: Node) -> tuple[int, int, int]:
    wallet = require_wallet(node)
    trusted = untrusted = 0
    for c in wallet.coins(node.chain, node.mempool):
        if c.confirmations > 0 or c.trusted:
            trusted += c.coin.out.value
        else:
            untrusted += c.coin.out.value
    return trusted, untrusted, wallet.immature_balance(node.chain)


@rpc(
    "getbalance",
    Param("dummy", "str", None),
    Param("minconf", "int", 0),
    Param("include_watchonly", "bool", True),
    Param("avoid_reuse", "bool", True),
    wallet=True,
)
def getbalance(node: Node, dummy: str | None, minconf: int, include_watchonly: bool, avoid_reuse: bool) -> Any:
    if dummy is not None and dummy != "*":
        raise RpcError(-32, 'dummy first argument must be excluded or set to "*".')
    wallet = require_wallet(node)
    total = 0
    for c in wallet.coins(node.chain, node.mempool):
        if c.confirmations >= minconf and (c.confirmations > 0 or c.trusted):
            total += c.coin.out.value
    return Amount(total)


@rpc("getbalances", wallet=True)
def getbalances(node: Node) -> Any:
    trusted, untrusted, immature = _balances(node)
    return {
        "mine": {"trusted": Amount(trusted), "untrusted_pending": Amount(untrusted), "immature": Amount(immature)},
        "lastprocessedblock": {"hash": node.chain.tip.header.hash_hex, "height": node.chain.height},
    }


@rpc(
    "listunspent",
    Param("minconf", "int", 1),
    Param("maxconf", "int", 9_999_999),
    Param("addresses", "arr", None),
    Param("include_unsafe", "bool", True),
    Param("query_options", "obj", None),
    wallet=True,
)
def listunspent(
    node: Node,
    minconf: int,
    maxconf: int,
    addresses: list[Any] | None,
    include_unsafe: bool,
    query_options: dict[str, Any] | None,
) -> Any:
    wallet = require_wallet(node)
    wanted: set[bytes] | None = None
    if addresses is not None:
        wanted = set()
        for a in addresses:
            if not isinstance(a, str):
                raise RpcError(RPC_TYPE_ERROR, "JSON value is not a string as expected")
            script = parse_address(node, a, f"Invalid Bitcoin address: {a}")
            if script in wanted:
                raise RpcError(RPC_INVALID_PARAMETER, f"Invalid parameter, duplicated address: {a}")
            wanted.add(script)
    opts = query_options or {}
    min_amount = amount_from_value(opts["minimumAmount"]) if "minimumAmount" in opts else 0
    max_amount = amount_from_value(opts["maximumAmount"]) if "maximumAmount" in opts else MAX_MONEY
    out = []
    coins = sorted(
        wallet.coins(node.chain, node.mempool), key=lambda c: (-c.confirmations, c.outpoint.txid, c.outpoint.n)
    )
    for c in coins:
        script = c.coin.out.script_pubkey
        if not minconf <= c.confirmations <= maxconf:
            continue
        if wanted is not None and script not in wanted:
            continue
        safe = c.confirmations > 0 or c.trusted
        if not safe and not include_unsafe:
            continue
        if not min_amount <= c.coin.out.value <= max_amount:
            continue
        item: dict[str, Any] = {"txid": hash_to_hex(c.outpoint.txid), "vout": c.outpoint.n}
        address = script_to_address(script, node.params)
        if address is not None:
            item["address"] = address
        if c.owned.key.label:
            item["label"] = c.owned.key.label
        item["scriptPubKey"] = script.hex()
        if c.owned.form == "p2sh-segwit":
            item["redeemScript"] = (b"\x00\x14" + hash160(c.owned.key.pubkey)).hex()
        item["amount"] = Amount(c.coin.out.value)
        item["confirmations"] = c.confirmations
        if c.confirmations == 0:
            item["ancestorcount"] = 1 + len(node.mempool.ancestors(c.outpoint.txid))
        item["spendable"] = True
        item["solvable"] = True
        item["desc"] = wallet.descriptor(c.owned)
        item["parent_descs"] = []
        item["safe"] = safe
        out.append(item)
    return out


@rpc("getaddressinfo", Param("address", "str"), wallet=True)
def getaddressinfo(node: Node, address: str) -> Any:
    wallet = require_wallet(node)
    script = parse_address(node, address, "Invalid address")
    owned = wallet.owned(script)
    wp = witness_program(script)
    kind = solve(script).kind
    out: dict[str, Any] = {
        "address": address,
        "scriptPubKey": script.hex(),
        "ismine": owned is not None,
        "solvable": owned is not None,
    }
    if owned is not None:
        out["desc"] = wallet.descriptor(owned)
    out["iswatchonly"] = False
    out["isscript"] = kind in (TxoutType.SCRIPTHASH, TxoutType.WITNESS_V0_SCRIPTHASH)
    out["iswitness"] = wp is not None
    if wp is not None:
        out["witness_version"] = wp[0]
        out["witness_program"] = wp[1].hex()
    if owned is not None:
        if owned.form == "p2sh-segwit":
            out["script"] = "witness_v0_keyhash"
            out["hex"] = (b"\x00\x14" + hash160(owned.key.pubkey)).hex()
        out["pubkey"] = owned.key.pubkey.hex()
        out["iscompressed"] = True
        out["ischange"] = owned.key.change
        out["labels"] = [owned.key.label] if not owned.key.change else []
    else:
        out["ischange"] = False
        out["labels"] = []
    return out


@rpc("getwalletinfo", wallet=True)
def getwalletinfo(node: Node) -> Any:
    wallet = require_wallet(node)
    trusted, untrusted, immature = _balances(node)
    return {
        "walletname": WALLET_NAME,
        "walletversion": 169900,
        "format": "sqlite",
        "balance": Amount(trusted),
        "unconfirmed_balance": Amount(untrusted),
        "immature_balance": Amount(immature),
        "txcount": 0,
        "keypoolsize": 0,
        "paytxfee": Amount(0),
        "private_keys_enabled": True,
        "avoid_reuse": False,
        "scanning": False,
        "descriptors": False,
        "external_signer": False,
        "blank": False,
        "keys": len(wallet.keys),
    }


@rpc("listwallets")
def listwallets(node: Node) -> Any:
    return [WALLET_NAME]


__all__ = ["METHODS", "Amount", "RpcError", "dispatch", "dumps"]
