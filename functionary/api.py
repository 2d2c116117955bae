"""The member's HTTP API (FastAPI).

Read paths follow Esplora's shapes (text for heights and hashes, hex for raw
data) so existing tooling works; ``/status`` is this project's own. Every error
is JSON ``{"code": ..., "message": ...}`` with a 4xx status.

    GET  /blocks/tip/height        text
    GET  /blocks/tip/hash          text
    GET  /block-height/:height     text (block hash)
    GET  /block/:hash/header       hex of the full header, proof included
    GET  /block/:hash/raw          the raw block (binary)
    GET  /block/:hash/txids        JSON list of txids
    GET  /tx/:txid/hex             the raw transaction, hex
    POST /tx                       raw transaction hex -> txid text
    GET  /status                   JSON: tip, round, peers, last blocks and signers
    GET  /blocks[/:start_height]   JSON: 10 blocks, newest first (Esplora)
    GET  /block/:hash              JSON block (Esplora + Elements' proof)
    GET  /block/:hash/status       {in_best_chain, height, next_best}
    GET  /block/:hash/signatures   which members signed (decoded from the proof)
    GET  /tx/:txid                 JSON transaction (Esplora-Elements)
    GET  /tx/:txid/status          {confirmed, block_height, block_hash, block_time}
    GET  /tx/:txid/merkle-proof    {block_height, merkle, pos}
    GET  /federation               keys, thresholds, scripts, PAK list, fault bounds
    GET  /peg/status               reserves, peg-outs, federation coins (503: no peg)
    GET  /pegin/address            ?claim_script=HEX -> mainchain peg-in address
    GET  /pegouts/:txid:vout       a peg-out's life cycle
    GET  /pegins/:txid:vout        where a mainchain output was claimed
    GET  /health                   200 when running, 503 otherwise
    GET  /metrics                  Prometheus text format 0.0.4
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from consensus.block import Block
from consensus.errors import ConsensusError, ParseError
from consensus.hashes import merkle_branch
from consensus.header import BlockHeader, solution_signers
from consensus.serialize import ByteReader
from consensus.standard import parse_pegout
from consensus.transaction import OUTPOINT_INDEX_MASK, OutPoint, Transaction, TxOut

from . import api_views as views
from . import openapi
from .api_errors import ApiError, error_response, mempool_rejection
from .exchange_api import has_pegout, mount_exchange_api
from .explorer import mount_explorer
from .mempool import MempoolError

if TYPE_CHECKING:
    from .node import FunctionaryNode

MAX_TX_BODY = 1_000_000
BLOCKS_PAGE = 10
MAX_CLAIM_SCRIPT = 520
"""Longest claim script accepted for /pegin/address (a script element's limit)."""
MAX_PEGIN_SCAN = 100_000
_OUTPOINT = re.compile(r"([0-9a-fA-F]{64}):([0-9]{1,10})")


_error = error_response


def _parse_hash(value: str) -> bytes:
    if len(value) != 64:
        raise ApiError(400, "InvalidHash", "a hash is 64 hex digits")
    try:
        return bytes.fromhex(value)[::-1]
    except ValueError:
        raise ApiError(400, "InvalidHash", "a hash is 64 hex digits") from None


def _parse_height(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise ApiError(400, "InvalidHeight", "height is a non-negative integer")
    return int(value)


def _parse_outpoint(value: str) -> tuple[bytes, int]:
    m = _OUTPOINT.fullmatch(value)
    # Elements keeps the top two bits of an input's index for its issuance
    # and peg-in flags, so no output, and no claimable mainchain output, has
    # an index above 2^30 - 1 (found by schemathesis: such an index was a 500).
    if m is None or int(m.group(2)) > OUTPOINT_INDEX_MASK:
        raise ApiError(400, "InvalidOutpoint", "an outpoint is TXID:VOUT (64 hex digits, an index below 2^30)")
    return bytes.fromhex(m.group(1))[::-1], int(m.group(2))


class ImmutableCache:
    """Answers that never change once a block is final (its JSON, header hex,
    raw bytes), by (kind, block hash): least recently used first out, bounded
    in entries and in bytes. Only blocks the member stores are cached, and a
    stored block carries m signatures: it never leaves the chain."""

    def __init__(self, max_entries: int = 8192, max_bytes: int = 64 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def get(self, kind: str, key: bytes) -> bytes | None:
        value = self._d.get((kind, key))
        if value is not None:
            self._d.move_to_end((kind, key))
        return value

    def put(self, kind: str, key: bytes, value: bytes) -> bytes:
        if len(value) > self.max_bytes:
            return value
        old = self._d.pop((kind, key), None)
        if old is not None:
            self.bytes -= len(old)
        self._d[(kind, key)] = value
        self.bytes += len(value)
        while len(self._d) > self.max_entries or self.bytes > self.max_bytes:
            _, dropped = self._d.popitem(last=False)
            self.bytes -= len(dropped)
        return value


def _json_bytes(obj: Any) -> bytes:
    """What starlette's JSONResponse renders, once."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def _text(body: bytes) -> Response:
    return Response(body, media_type="text/plain; charset=utf-8")


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def create_app(node: FunctionaryNode) -> FastAPI:
    app = FastAPI(title="Federation member API", version="0.1.0")
    cache = ImmutableCache()
    app.state.read_cache = cache
    tip_text: tuple[int, bytes] = (-1, b"")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.code, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        return _error(400, "InvalidRequest", str(e.errors()[:3]))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(e.status_code, "HttpError")
        return _error(e.status_code, code, str(e.detail))

    # Hot read paths answer pre-encoded bytes as a plain Response: no
    # pydantic serialization, no thread hop when the cache holds the answer.

    @app.get("/blocks/tip/height", response_class=PlainTextResponse)
    async def tip_height() -> Response:
        nonlocal tip_text
        h = node.tip_height
        if tip_text[0] != h:
            tip_text = (h, str(h).encode())
        return _text(tip_text[1])

    @app.get("/blocks/tip/hash", response_class=PlainTextResponse)
    async def tip_hash() -> Response:
        return _text(node.tip_hash[::-1].hex().encode())

    @app.get("/block-height/{height}", response_class=PlainTextResponse)
    async def block_height(height: str) -> Response:
        h = _parse_height(height)
        if h == 0:
            return _text(node.chain.genesis.hash[::-1].hex().encode())
        key = h.to_bytes(8, "big")
        hit = cache.get("height", key)
        if hit is None:
            stored = await asyncio.to_thread(node.storage.block_by_height, h)
            if stored is None:
                raise ApiError(404, "BlockNotFound", f"no block at height {h}")
            hit = cache.put("height", key, stored.hash[::-1].hex().encode())
        return _text(hit)

    @app.get("/block/{block_hash}/header", response_class=PlainTextResponse)
    async def block_header(block_hash: str) -> Response:
        bh = _parse_hash(block_hash)
        hit = cache.get("header", bh)
        if hit is None:
            if bh == node.chain.genesis.hash:
                header = node.chain.genesis.header
            else:
                stored = await asyncio.to_thread(node.storage.block_by_hash, bh)
                if stored is None:
                    raise ApiError(404, "BlockNotFound", f"no block {block_hash}")
                # Stored headers are parsed once more so only well-formed ones leave.
                header = BlockHeader.read(ByteReader(stored.header))
            hit = cache.put("header", bh, header.serialize().hex().encode())
        return _text(hit)

    async def _stored_block(block_hash: str) -> bytes:
        bh = _parse_hash(block_hash)
        hit = cache.get("raw", bh)
        if hit is not None:
            return hit
        if bh == node.chain.genesis.hash:
            return cache.put("raw", bh, node.chain.genesis.serialize())
        stored = await asyncio.to_thread(node.storage.block_by_hash, bh)
        if stored is None:
            raise ApiError(404, "BlockNotFound", f"no block {block_hash}")
        return cache.put("raw", bh, stored.raw)

    @app.get("/block/{block_hash}/raw")
    async def block_raw(block_hash: str) -> Response:
        return Response(await _stored_block(block_hash), media_type="application/octet-stream")

    @app.get("/block/{block_hash}/txids")
    async def block_txids(block_hash: str) -> list[str]:
        block = Block.parse(await _stored_block(block_hash))
        return [t[::-1].hex() for t in block.txids]

    @app.get("/tx/{txid}/hex", response_class=PlainTextResponse)
    async def tx_hex(txid: str) -> str:
        t = _parse_hash(txid)
        entry = next((e for e in node.mempool.entries() if e.txid == t), None)
        if entry is not None:
            return entry.tx.serialize().hex()
        loc = await asyncio.to_thread(node.storage.tx_location, t)
        if loc is None:
            raise ApiError(404, "TxNotFound", f"no transaction {txid}")
        height, pos = loc
        stored = await asyncio.to_thread(node.storage.block_by_height, height)
        if stored is None:
            raise ApiError(404, "TxNotFound", f"no transaction {txid}")
        return Block.parse(stored.raw).transactions[pos].serialize().hex()

    @app.post("/tx", response_class=PlainTextResponse)
    async def post_tx(request: Request) -> str:
        body = await request.body()
        if len(body) > 2 * MAX_TX_BODY:
            raise ApiError(413, "BodyTooLarge", "transaction body too large")
        try:
            raw = bytes.fromhex(body.decode("ascii").strip())
            tx = Transaction.parse(raw)
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "InvalidHex", "body must be the transaction in hex") from None
        except ParseError as e:
            raise ApiError(400, "ParseError", str(e)) from None
        if node.federation.exchanges and has_pegout(tx):
            # Where exchanges are registered, a peg-out is accepted only with
            # an exchange's signature (POST /pegouts), never anonymously.
            raise ApiError(403, "PegoutNeedsExchangeApi", "submit peg-out transactions to POST /pegouts")
        try:
            entry = await node.submit_transaction(tx)
        except MempoolError as e:
            raise mempool_rejection(e) from None
        return entry.txid[::-1].hex()

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return node.status()

    # -- Esplora read paths ----------------------------------------------------------------

    parent = node.federation.peg.params.parent if node.federation.peg is not None else None

    async def _block_at(height: int) -> Block | None:
        if height == 0:
            return node.chain.genesis
        stored = await asyncio.to_thread(node.storage.block_by_height, height)
        return None if stored is None else Block.parse(stored.raw)

    async def _block_by_hash(block_hash: str) -> Block:
        return Block.parse(await _stored_block(block_hash))

    def _mediantime(height: int) -> int:
        lo = max(0, height - views.MEDIAN_TIME_SPAN + 1)
        try:
            return views.median_time([node.chain.header_at(h) for h in range(lo, height + 1)])
        except IndexError:
            return 0

    def _block_json(block: Block) -> dict[str, Any]:
        return views.block_json(block, _mediantime(block.header.height))

    @app.get("/blocks")
    async def blocks_tip() -> list[dict[str, Any]]:
        return await _blocks(node.tip_height)

    @app.get("/blocks/{start_height}")
    async def blocks_from(start_height: str) -> list[dict[str, Any]]:
        return await _blocks(min(_parse_height(start_height), node.tip_height))

    async def _blocks(start: int) -> list[dict[str, Any]]:
        lo = max(0, start - BLOCKS_PAGE + 1)
        out: list[Block] = [node.chain.genesis] if lo == 0 else []
        first = max(lo, 1)
        if start >= first:
            stored = await asyncio.to_thread(node.storage.blocks_from, first, start - first + 1)
            out.extend(Block.parse(b.raw) for b in stored if b.height <= start)
        return [_block_json(b) for b in reversed(out)]

    @app.get("/block/{block_hash}", response_model=dict[str, Any])
    async def block(block_hash: str) -> Response:
        bh = _parse_hash(block_hash)
        hit = cache.get("json", bh)
        if hit is None:
            hit = cache.put("json", bh, _json_bytes(_block_json(await _block_by_hash(block_hash))))
        return _json(hit)

    @app.get("/block/{block_hash}/status")
    async def block_status(block_hash: str) -> dict[str, Any]:
        blk = await _block_by_hash(block_hash)
        h = blk.header.height
        try:
            in_best = node.chain.header_at(h).hash == blk.hash
        except IndexError:
            in_best = False
        next_best = None
        if in_best and h < node.tip_height:
            next_best = views.hx(node.chain.header_at(h + 1).hash)
        return {"in_best_chain": in_best, "height": h, "next_best": next_best}

    @app.get("/block/{block_hash}/signatures")
    async def block_signatures(block_hash: str) -> dict[str, Any]:
        blk = await _block_by_hash(block_hash)
        fed = node.federation
        try:
            signers = solution_signers(fed.federation_params(), blk.header)
            error = None
        except ConsensusError as e:
            # The genesis block carries no signatures; any other block here was
            # checked when it was connected.
            signers, error = [], type(e).__name__
        return {
            "id": views.hx(blk.hash),
            "height": blk.header.height,
            "threshold": fed.threshold,
            "signers": [
                {
                    "index": i,
                    "name": fed.members[i].name,
                    "signing_pubkey": fed.members[i].signing_pubkey.hex(),
                }
                for i in signers
            ],
            "error": error,
        }

    async def _find_tx(t: bytes) -> tuple[Transaction, int | None, Block | None, int]:
        """The transaction with its block height, block and position (None: mempool)."""
        entry = next((e for e in node.mempool.entries() if e.txid == t), None) if t in node.mempool else None
        if entry is not None:
            return entry.tx, None, None, -1
        loc = await asyncio.to_thread(node.storage.tx_location, t)
        if loc is None:
            genesis = node.chain.genesis
            for pos, gtx in enumerate(genesis.transactions):
                if gtx.txid == t:
                    return gtx, 0, genesis, pos
            raise ApiError(404, "TxNotFound", f"no transaction {t[::-1].hex()}")
        height, pos = loc
        blk = await _block_at(height)
        if blk is None or pos >= len(blk.transactions):
            raise ApiError(404, "TxNotFound", f"no transaction {t[::-1].hex()}")
        return blk.transactions[pos], height, blk, pos

    def _status(height: int | None, blk: Block | None) -> dict[str, Any]:
        if height is None or blk is None:
            return views.status_json(None, None, None)
        return views.status_json(height, blk.hash, blk.header.time)

    async def _prevouts(tx: Transaction) -> dict[tuple[bytes, int], TxOut]:
        found: dict[tuple[bytes, int], TxOut] = {}
        if tx.is_coinbase:
            return found
        cache: dict[bytes, Transaction | None] = {}
        for txin in tx.inputs:
            if txin.is_pegin:
                continue
            pt = txin.prevout.txid
            if pt not in cache:
                try:
                    cache[pt] = (await _find_tx(pt))[0]
                except ApiError:
                    cache[pt] = None
            prev = cache[pt]
            if prev is not None and txin.prevout.index < len(prev.outputs):
                found[(pt, txin.prevout.index)] = prev.outputs[txin.prevout.index]
        return found

    @app.get("/tx/{txid}")
    async def tx_json(txid: str) -> dict[str, Any]:
        tx, height, blk, _ = await _find_tx(_parse_hash(txid))
        prev = await _prevouts(tx)
        return views.tx_json(tx, _status(height, blk), lambda t, i: prev.get((t, i)), parent)

    @app.get("/tx/{txid}/status")
    async def tx_status(txid: str) -> dict[str, Any]:
        _, height, blk, _ = await _find_tx(_parse_hash(txid))
        return _status(height, blk)

    @app.get("/tx/{txid}/merkle-proof")
    async def tx_merkle_proof(txid: str) -> dict[str, Any]:
        _, height, blk, pos = await _find_tx(_parse_hash(txid))
        if height is None or blk is None:
            raise ApiError(404, "TxNotConfirmed", f"transaction {txid} is not in a block")
        branch = merkle_branch(list(blk.txids), pos)
        return {"block_height": height, "merkle": [views.hx(b) for b in branch], "pos": pos}

    # -- federation and peg ------------------------------------------------------------------

    @app.get("/federation")
    async def federation() -> dict[str, Any]:
        fed = node.federation
        fp = fed.federation_params()
        peg = fed.peg
        watchmen = peg.params.watchman_keys if peg is not None else ()
        members = []
        for m in fed.members:
            members.append(
                {
                    "index": m.index,
                    "name": m.name,
                    "signing_pubkey": m.signing_pubkey.hex(),
                    "watchman_pubkey": watchmen[m.index].hex() if len(watchmen) == fed.n else None,
                    "identity_pubkey": m.identity_pubkey.hex(),
                }
            )
        peg_json: dict[str, Any] | None = None
        if peg is not None:
            p = peg.params
            peg_json = {
                "parent": p.parent.name,
                "parent_genesis_hash": views.hx(p.parent_genesis_hash),
                "threshold": p.peg_threshold,
                "watchman_keys": [k.hex() for k in p.watchman_keys],
                "emergency_keys": [k.hex() for k in p.emergency_keys],
                "emergency_threshold": p.emergency_threshold,
                "csv_delay": p.csv_delay,
                "pegin_min_depth": p.pegin_min_depth,
                "fedpegscript": p.fedpegscript.hex(),
                "enforce_pak": p.enforce_pak,
                "pak": [
                    {"name": name, "online": e.online.hex(), "offline": e.offline.hex()}
                    for name, e in zip(peg.pak_names, p.pak, strict=False)
                ],
            }
        return {
            "n": fed.n,
            "threshold": fed.threshold,
            "members": members,
            "signblockscript": fp.challenge.hex(),
            "fedpegscript": peg_json["fedpegscript"] if peg_json is not None else None,
            "pak": peg_json["pak"] if peg_json is not None else [],
            "fault_bounds": {
                "offline_tolerance": fp.offline_tolerance,
                "equivocation_tolerance": fp.equivocation_tolerance,
            },
            "peg": peg_json,
            "exchanges": [
                {"id": e.id, "api_pubkey": e.api_pubkey.hex(), "requests_per_minute": e.requests_per_minute}
                for e in fed.exchanges
            ],
            "chain_id": fed.chain_id.hex(),
        }

    def _peg_runtime() -> Any:
        if node.peg is None:
            raise ApiError(503, "PegNotRunning", "this member runs no peg (no mainchain connection)")
        return node.peg

    @app.get("/peg/status")
    async def peg_status() -> dict[str, Any]:
        peg = _peg_runtime()
        ledger = peg.ledger
        r = ledger.reserves()
        pending = ledger.payable_pegouts()
        return {
            **peg.status(),
            "pending_pegouts": len(pending),
            "pending": [
                {
                    "id": f"{views.hx(e.id.txid)}:{e.id.index}",
                    "amount": e.amount,
                    "sidechain_height": e.sidechain_height,
                }
                for e in pending
            ],
            "federation_utxos": [
                {"outpoint": f"{views.hx(u.outpoint.txid)}:{u.outpoint.vout}", "value": u.value, "height": u.height}
                for u in ledger.utxos()
            ],
            "reserves": {
                "pegged_in": r.pegged_in,
                "burned": r.burned,
                "burned_unpayable": r.burned_unpayable,
                "paid_out": r.paid_out,
                "fees": r.fees,
                "unaccounted": r.unaccounted,
                "federation_utxo_sum": r.utxo_sum,
                "federation_utxo_count": r.utxo_count,
                "expected_utxo_sum": r.expected_utxo_sum,
                "sidechain_supply": r.sidechain_supply,
                "owed": r.owed,
                "surplus": r.surplus,
                "balanced": r.balanced,
            },
            "mainchain_tip": peg.view.tip_height(),
            "sidechain_height": ledger.last_height,
        }

    @app.get("/pegin/address")
    async def pegin_address(claim_script: str = "") -> dict[str, Any]:
        if node.federation.peg is None:
            raise ApiError(503, "PegNotConfigured", "this federation has no peg")
        if len(claim_script) > 2 * MAX_CLAIM_SCRIPT:
            raise ApiError(400, "ClaimScriptTooLong", f"a claim script is at most {MAX_CLAIM_SCRIPT} bytes")
        try:
            script = bytes.fromhex(claim_script) if claim_script.isascii() else None
        except ValueError:
            script = None
        if not script:
            raise ApiError(400, "InvalidClaimScript", "claim_script is a non-empty hex script")
        params = node.federation.peg.params
        try:
            address = params.pegin_address(script)
            spk = params.pegin_script_pubkey(script)
        except (ValueError, ConsensusError) as e:
            raise ApiError(400, "InvalidClaimScript", str(e)) from None
        return {
            "claim_script": script.hex(),
            "mainchain_address": address,
            "mainchain_scriptpubkey": spk.hex(),
            "fedpegscript": params.fedpegscript.hex(),
            "pegin_min_depth": params.pegin_min_depth,
        }

    @app.get("/pegouts/{outpoint}")
    async def pegout(outpoint: str) -> dict[str, Any]:
        t, vout = _parse_outpoint(outpoint)
        # Received but in no block yet: the mempool knows, the peg need not run.
        received = _received_pegout(t, vout)
        if received is not None:
            return received
        peg = _peg_runtime()
        ledger = peg.ledger
        pid = OutPoint(t, vout)
        e = ledger.pegout(pid)
        if e is None:
            raise ApiError(404, "PegOutNotFound", f"no peg-out {outpoint}")
        state = ledger.pegout_state(pid)
        blk = await _block_at(e.sidechain_height)
        mc_tip = peg.view.tip_height()
        stages: list[dict[str, Any]] = [
            {
                "stage": "in_sidechain_block",
                "height": e.sidechain_height,
                "block_hash": views.hx(blk.hash) if blk is not None else None,
                "depth": node.tip_height - e.sidechain_height + 1,
            }
        ]
        status = state.status.value
        if status in ("in_payout", "paid"):
            stages.append({"stage": "signed_mainchain_tx", "txids": [views.hx(x) for x in state.txids]})
        if status == "paid":
            stages.append(
                {
                    "stage": "confirmed",
                    "txid": views.hx(state.txids[0]),
                    "mainchain_height": state.height,
                    "depth": mc_tip - state.height + 1,
                }
            )
        return {
            "id": f"{views.hx(t)}:{vout}",
            "amount": e.amount,
            "destination": e.destination.hex(),
            "destination_address": views.segwit_address(peg.ledger.peg.parent.bech32_hrp, e.destination),
            "payable": e.payable,
            "status": status,
            "stages": stages,
        }

    def _received_pegout(txid: bytes, vout: int) -> dict[str, Any] | None:
        """A peg-out still in the mempool: received, in no block yet."""
        entry = next((m for m in node.mempool.entries() if m.txid == txid), None) if txid in node.mempool else None
        if entry is None or vout >= len(entry.tx.outputs):
            return None
        out = entry.tx.outputs[vout]
        parsed = parse_pegout(out.script_pubkey)
        if parsed is None:
            return None
        hrp = parent.bech32_hrp if parent is not None else ""
        return {
            "id": f"{views.hx(txid)}:{vout}",
            "amount": out.value.amount if out.value.is_explicit else None,
            "destination": parsed.parent_script.hex(),
            "destination_address": views.segwit_address(hrp, parsed.parent_script) if hrp else None,
            "payable": None,
            "status": "received",
            "stages": [{"stage": "received", "in_mempool": True}],
        }

    @app.get("/pegins/{outpoint}")
    async def pegin(outpoint: str) -> dict[str, Any]:
        t, vout = _parse_outpoint(outpoint)
        op = OutPoint(t, vout)
        if not node.chain.is_pegin_claimed(op):
            raise ApiError(404, "PegInNotFound", f"no peg-in of {outpoint} on this chain")
        found = await asyncio.to_thread(_scan_pegin, op)
        fed_coin: dict[str, Any] | None = None
        if node.peg is not None:
            from .watchmen.txmath import MainOutPoint

            u = node.peg.ledger.utxo(MainOutPoint(t, vout))
            spender = node.peg.ledger.spender(MainOutPoint(t, vout))
            fed_coin = {
                "value": u.value if u is not None else None,
                "mainchain_height": u.height if u is not None else None,
                "spent_by": views.hx(spender) if spender is not None else None,
            }
        if found is None:
            raise ApiError(404, "PegInNotFound", f"peg-in of {outpoint} is claimed but its block was not found")
        height, block_hash, txid, vin, value = found
        return {
            "mainchain_outpoint": f"{views.hx(t)}:{vout}",
            "claimed": True,
            "txid": views.hx(txid),
            "vin": vin,
            "value": value,
            "status": views.status_json(height, block_hash, node.chain.header_at(height).time),
            "federation_coin": fed_coin,
        }

    def _scan_pegin(op: OutPoint) -> tuple[int, bytes, bytes, int, int | None] | None:
        # The peg ledger keeps no claim txid: scan the chain, newest first.
        top = node.tip_height
        h = top
        while h >= 1 and top - h < MAX_PEGIN_SCAN:
            lo = max(1, h - 99)
            for stored in reversed(node.storage.blocks_from(lo, h - lo + 1)):
                blk = Block.parse(stored.raw)
                for tx in blk.transactions:
                    for i, txin in enumerate(tx.inputs):
                        if txin.is_pegin and txin.prevout == op:
                            return stored.height, blk.hash, tx.txid, i, None
            h = lo - 1
        return None

    # -- operations ----------------------------------------------------------------------

    def _running() -> bool:
        return not node.failed.done() and not node._stopped.is_set()

    @app.get("/health")
    async def health() -> JSONResponse:
        body = {
            "status": "ok" if _running() else "stopped",
            "member": node.member,
            "tip": {"height": node.tip_height, "hash": node.tip_hash[::-1].hex()},
            "peers_connected": len(node.network.connected_peers()),
        }
        if not _running():
            return JSONResponse({"code": "NotRunning", "message": "the node is not running", **body}, 503)
        return JSONResponse(body)

    @app.get("/metrics")
    async def metrics() -> Response:
        m = views.Metrics()
        m.add("functionary_tip_height", "gauge", "Height of the best block.", node.tip_height)
        m.add("functionary_round_height", "gauge", "Height the signer is working on.", node.machine.height)
        m.add("functionary_round", "gauge", "Consensus round at the current height.", node.machine.round)
        fed = node.federation
        for mem in fed.members:
            m.add(
                "functionary_member_blocks_signed",
                "counter",
                "Committed blocks carrying each member's signature, seen by this member.",
                node.stats.signed_by_member.get(mem.index, 0),
                {"member": str(mem.index), "name": mem.name},
            )
        m.add("functionary_peers_connected", "gauge", "Peers connected.", len(node.network.connected_peers()))
        m.add("functionary_mempool_transactions", "gauge", "Transactions in the mempool.", len(node.mempool))
        m.add("functionary_mempool_weight", "gauge", "Weight of the mempool.", node.mempool.total_weight)
        m.add("functionary_blocks_committed", "counter", "Blocks committed since start.", node.stats.commits)
        m.add("functionary_peg_running", "gauge", "1 if this member runs the peg.", int(node.peg is not None))
        if node.peg is not None:
            ledger = node.peg.ledger
            r = ledger.reserves()
            m.add(
                "functionary_pegouts_pending",
                "gauge",
                "Payable peg-outs awaiting payment.",
                len(ledger.payable_pegouts()),
            )
            for key, value in (
                ("pegged_in", r.pegged_in),
                ("paid_out", r.paid_out),
                ("fees", r.fees),
                ("owed", r.owed),
                ("sidechain_supply", r.sidechain_supply),
                ("federation_utxo_sum", r.utxo_sum),
            ):
                m.add(f"functionary_reserves_{key}_sats", "gauge", f"Peg ledger: {key.replace('_', ' ')}.", value)
            m.add("functionary_reserves_balanced", "gauge", "1 if federation coins match the ledger.", int(r.balanced))
        return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # The exchange API and the explorer page live in their own modules; each
    # adds its routes here so the error handlers above cover them too.
    mount_exchange_api(app, node)
    mount_explorer(app, node)
    openapi.install(app)
    return app
