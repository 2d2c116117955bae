"""JSON shaping for the read API: Esplora's shapes with Elements' extensions.

Hashes are shown in display order (byte-reversed), as Esplora and Elements do;
scripts, keys and proofs as plain hex. Nothing here touches storage: callers
hand in parsed blocks and transactions, and a lookup for spent outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from consensus.block import Block
from consensus.header import BlockHeader
from consensus.mainchain import MainchainNetwork, encode_segwit_address
from consensus.standard import parse_pegout
from consensus.transaction import AssetIssuance, Transaction, TxOut

COINBASE_TXID = "0" * 64
COINBASE_VOUT = 0xFFFFFFFF
MEDIAN_TIME_SPAN = 11

PrevoutLookup = Callable[[bytes, int], TxOut | None]


def hx(h: bytes) -> str:
    """A hash in display order."""
    return h[::-1].hex()


def segwit_address(hrp: str, script: bytes) -> str | None:
    """The bech32(m) address of a segwit ``script``, or None for any other script."""
    n = len(script)
    if n < 4 or n > 42 or script[1] != n - 2:
        return None
    op = script[0]
    if op == 0:
        version = 0
    elif 0x51 <= op <= 0x60:
        version = op - 0x50
    else:
        return None
    try:
        return encode_segwit_address(hrp, version, script[2:])
    except ValueError:
        return None


def script_type(script: bytes, is_fee: bool) -> str:
    n = len(script)
    if n == 0:
        return "fee" if is_fee else "empty"
    if n == 22 and script[0] == 0 and script[1] == 20:
        return "v0_p2wpkh"
    if n == 34 and script[0] == 0 and script[1] == 32:
        return "v0_p2wsh"
    if script[0] == 0x6A:
        return "op_return"
    return "unknown"


def median_time(headers: Sequence[BlockHeader]) -> int:
    """The median of the given headers' times (Bitcoin's median time past)."""
    times = sorted(h.time for h in headers)
    return times[len(times) // 2]


def block_json(block: Block, mediantime: int) -> dict[str, Any]:
    h = block.header
    return {
        "id": hx(block.hash),
        "height": h.height,
        "version": h.version,
        "timestamp": h.time,
        "tx_count": len(block.transactions),
        "size": block.size,
        "weight": block.weight,
        "merkle_root": hx(h.merkle_root),
        "previousblockhash": hx(h.prev_hash) if h.height > 0 else None,
        "mediantime": mediantime,
        "proof": {"challenge": h.proof.challenge.hex(), "solution": h.proof.solution.hex()},
    }


def vout_json(out: TxOut, parent: MainchainNetwork | None) -> dict[str, Any]:
    spk = out.script_pubkey
    d: dict[str, Any] = {
        "scriptpubkey": spk.hex(),
        "scriptpubkey_type": script_type(spk, out.is_fee),
    }
    if out.value.is_explicit:
        d["value"] = out.value.amount
    elif out.value.is_commitment:
        d["valuecommitment"] = out.value.raw.hex()
    if out.asset.is_explicit:
        d["asset"] = hx(out.asset.asset_id)
    elif out.asset.is_commitment:
        d["assetcommitment"] = out.asset.raw.hex()
    pegout = parse_pegout(spk) if spk[:1] == b"\x6a" else None
    d["pegout"] = None  # Esplora-Elements: present on every output, null unless a peg-out
    if pegout is not None:
        d["pegout"] = {
            "genesis_hash": hx(pegout.genesis_hash),
            "scriptpubkey": pegout.parent_script.hex(),
            "scriptpubkey_address": segwit_address(parent.bech32_hrp, pegout.parent_script)
            if parent is not None
            else None,
        }
    return d


def status_json(height: int | None, block_hash: bytes | None, block_time: int | None) -> dict[str, Any]:
    if height is None or block_hash is None:
        return {"confirmed": False}
    return {"confirmed": True, "block_height": height, "block_hash": hx(block_hash), "block_time": block_time}


def _issuance_json(iss: AssetIssuance | None) -> dict[str, Any] | None:
    if iss is None:
        return None
    d: dict[str, Any] = {
        "is_reissuance": iss.blinding_nonce != bytes(32),
        "asset_blinding_nonce": iss.blinding_nonce.hex(),
        "asset_entropy": iss.entropy.hex(),
    }
    for name, value in (("assetamount", iss.amount), ("tokenamount", iss.inflation_keys)):
        if value.is_explicit:
            d[name] = value.amount
        elif value.is_commitment:
            d[name + "commitment"] = value.raw.hex()
    return d


def tx_json(
    tx: Transaction,
    status: dict[str, Any],
    prevout: PrevoutLookup,
    parent: MainchainNetwork | None,
) -> dict[str, Any]:
    coinbase = tx.is_coinbase
    vin: list[dict[str, Any]] = []
    for i, txin in enumerate(tx.inputs):
        wit = tx.input_witnesses[i] if i < len(tx.input_witnesses) else None
        if coinbase:
            entry: dict[str, Any] = {"txid": COINBASE_TXID, "vout": COINBASE_VOUT, "prevout": None}
        else:
            spent = None if txin.is_pegin else prevout(txin.prevout.txid, txin.prevout.index)
            entry = {
                "txid": hx(txin.prevout.txid),
                "vout": txin.prevout.index,
                "prevout": vout_json(spent, parent) if spent is not None else None,
            }
        entry.update(
            {
                "is_coinbase": coinbase,
                "scriptsig": txin.script_sig.hex(),
                "witness": [w.hex() for w in wit.script_witness] if wit is not None else [],
                "sequence": txin.sequence,
                "is_pegin": txin.is_pegin,
                "issuance": _issuance_json(txin.issuance),
            }
        )
        if txin.is_pegin and wit is not None:
            entry["pegin_witness"] = [w.hex() for w in wit.pegin_witness]
        vin.append(entry)
    fee = sum(o.value.amount for o in tx.outputs if o.is_fee and o.value.is_explicit)
    return {
        "txid": hx(tx.txid),
        "version": tx.version,
        "locktime": tx.locktime,
        "vin": vin,
        "vout": [vout_json(o, parent) for o in tx.outputs],
        "size": tx.size,
        "weight": tx.weight,
        "fee": fee,
        "status": status,
    }


# --- Prometheus text exposition (format 0.0.4) ---------------------------------------


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Collects samples and renders them in Prometheus' text format."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[tuple[dict[str, str], float]]]] = {}

    def add(self, name: str, kind: str, help_text: str, value: float, labels: dict[str, str] | None = None) -> None:
        fam = self._families.setdefault(name, (kind, help_text, []))
        fam[2].append((labels or {}, value))

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text, samples) in self._families.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lab = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                num = str(int(value)) if float(value).is_integer() else repr(float(value))
                lines.append(f"{name}{{{lab}}} {num}" if lab else f"{name} {num}")
        return "\n".join(lines) + "\n"
