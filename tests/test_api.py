"""The read API's Esplora shapes, federation and peg paths, health and metrics,
and that no input makes it answer 500 (an in-process 1-of-1 federation)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from coincurve import PrivateKey

from consensus.hashes import merkle_root_from_branch
from functionary.api import ImmutableCache, create_app
from functionary.cli import PegOptions, init_federation
from functionary.config import Federation, MemberConfig, MemberKeys
from functionary.node import FunctionaryNode
from functionary.txbuild import build_p2wpkh_spend, p2wpkh_for
from tests.test_runtime import FREE, Solo, _free_port, _wait

BLOCK_KEYS = {
    "id",
    "height",
    "version",
    "timestamp",
    "tx_count",
    "size",
    "weight",
    "merkle_root",
    "previousblockhash",
    "mediantime",
    "proof",
}
TX_KEYS = {"txid", "version", "locktime", "vin", "vout", "size", "weight", "fee", "status"}
VIN_KEYS = {"txid", "vout", "is_coinbase", "scriptsig", "witness", "sequence", "is_pegin", "prevout", "issuance"}
STATUS_KEYS = {"confirmed", "block_height", "block_hash", "block_time"}


class PegSolo(Solo):
    """A 1-of-1 federation with a peg configured but no mainchain connection."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        init_federation(
            tmp,
            1,
            1,
            p2p_port=_free_port(),
            api_port=_free_port(),
            block_interval=0.2,
            round_timeout=1.0,
            free_coins=FREE,
            peg=PegOptions(),
        )
        faucet = json.loads((tmp / "faucet.json").read_text())
        self.faucet = PrivateKey(bytes.fromhex(faucet["key"]))


def _run(solo: Solo, body: Callable[[Solo, httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        await solo.start()
        try:
            app = create_app(solo.node)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://member") as c:
                await body(solo, c)
        finally:
            await solo.node.stop()

    asyncio.run(main())


def _is_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) >= {"code", "message"}
    if code is not None:
        assert body["code"] == code, body


def test_esplora_shapes_and_values(tmp_path: Path) -> None:
    async def body(solo: Solo, c: httpx.AsyncClient) -> None:
        node = solo.node
        await _wait(lambda: node.chain.tip_height >= 2, 10, "two blocks")
        bob = PrivateKey(b"\x0b" * 32)
        tx = build_p2wpkh_spend([solo.genesis_coin()], [(p2wpkh_for(bob), 300_000_000)], 1_234, solo.asset)
        await node.submit_transaction(tx)
        await _wait(lambda: tx.txid not in node.mempool, 10, "the transaction to be mined")
        loc = await asyncio.to_thread(node.storage.tx_location, tx.txid)
        assert loc is not None
        height, pos = loc

        # /tx/:txid
        r = await c.get(f"/tx/{tx.txid_hex}")
        assert r.status_code == 200
        t = r.json()
        assert set(t) == TX_KEYS
        assert t["txid"] == tx.txid_hex and t["fee"] == 1_234
        assert t["size"] == tx.size and t["weight"] == tx.weight
        assert len(t["vin"]) == 1 and set(t["vin"][0]) == VIN_KEYS
        vin = t["vin"][0]
        assert vin["is_pegin"] is False and vin["is_coinbase"] is False
        assert vin["txid"] == node.chain.genesis.transactions[0].txid_hex and vin["vout"] == 0
        assert vin["prevout"]["value"] == FREE
        assert len(vin["witness"]) == 2  # P2WPKH: signature, key
        values = [o.get("value") for o in t["vout"]]
        assert values == [o.value.amount for o in tx.outputs]
        assert sum(values) == FREE
        assert {o["scriptpubkey_type"] for o in t["vout"]} >= {"v0_p2wpkh", "fee"}
        assert t["vout"][0]["scriptpubkey"] == p2wpkh_for(bob).hex()
        assert t["vout"][0]["asset"] == solo.asset[::-1].hex()
        assert all("valuecommitment" not in o and o["pegout"] is None for o in t["vout"])
        assert vin["issuance"] is None
        header = node.chain.header_at(height)
        assert t["status"] == {
            "confirmed": True,
            "block_height": height,
            "block_hash": header.hash_hex,
            "block_time": header.time,
        }
        assert (await c.get(f"/tx/{tx.txid_hex}/status")).json() == t["status"]

        # The coinbase's input.
        coinbase_txid = (await c.get(f"/block/{header.hash_hex}/txids")).json()[0]
        cb = (await c.get(f"/tx/{coinbase_txid}")).json()
        assert cb["vin"][0]["is_coinbase"] is True and cb["vin"][0]["vout"] == 0xFFFFFFFF

        # /tx/:txid/merkle-proof verifies to the header's merkle root.
        proof = (await c.get(f"/tx/{tx.txid_hex}/merkle-proof")).json()
        assert set(proof) == {"block_height", "merkle", "pos"}
        assert proof["block_height"] == height and proof["pos"] == pos
        branch = [bytes.fromhex(h)[::-1] for h in proof["merkle"]]
        assert merkle_root_from_branch(tx.txid, branch, proof["pos"]) == header.merkle_root
        assert merkle_root_from_branch(tx.txid, branch, proof["pos"] ^ 1) != header.merkle_root

        # /block/:hash
        b = (await c.get(f"/block/{header.hash_hex}")).json()
        assert set(b) == BLOCK_KEYS
        assert b["id"] == header.hash_hex and b["height"] == height
        assert b["tx_count"] == len((await c.get(f"/block/{header.hash_hex}/txids")).json()) >= 2
        assert b["merkle_root"] == header.merkle_root[::-1].hex()
        assert b["previousblockhash"] == node.chain.header_at(height - 1).hash_hex
        assert b["timestamp"] == header.time and b["version"] == header.version
        raw = (await c.get(f"/block/{header.hash_hex}/raw")).content
        assert b["size"] == len(raw)
        assert b["proof"] == {"challenge": header.proof.challenge.hex(), "solution": header.proof.solution.hex()}
        fed_json = json.loads((solo.dir / "federation.json").read_text())
        assert b["proof"]["challenge"] == fed_json["signblockscript"]
        times = sorted(node.chain.header_at(h).time for h in range(max(0, height - 10), height + 1))
        assert b["mediantime"] == times[len(times) // 2]
        g = (await c.get(f"/block/{node.chain.genesis.hash_hex}")).json()
        assert g["height"] == 0 and g["previousblockhash"] is None

        # /block/:hash/status
        s = (await c.get(f"/block/{header.hash_hex}/status")).json()
        assert s["in_best_chain"] is True and s["height"] == height
        assert s["next_best"] == (node.chain.header_at(height + 1).hash_hex if height < node.chain.tip_height else None)

        # /blocks and /blocks/:start
        blocks = (await c.get("/blocks")).json()
        heights = [x["height"] for x in blocks]
        assert len(blocks) == min(10, heights[0] + 1)
        assert heights == list(range(heights[0], heights[0] - len(heights), -1))
        assert heights[0] >= height
        assert [x["height"] for x in (await c.get("/blocks/1")).json()] == [1, 0]
        assert [x["id"] for x in (await c.get("/blocks/0")).json()] == [node.chain.genesis.hash_hex]
        far = (await c.get("/blocks/4000000000")).json()
        assert far[0]["height"] <= node.chain.tip_height

        # /block/:hash/signatures names member 0 (the only one).
        sig = (await c.get(f"/block/{header.hash_hex}/signatures")).json()
        assert [m["index"] for m in sig["signers"]] == [0]
        assert sig["signers"][0]["signing_pubkey"] == fed_json["members"][0]["signing_pubkey"]
        assert sig["error"] is None and sig["threshold"] == 1
        gsig = (await c.get(f"/block/{node.chain.genesis.hash_hex}/signatures")).json()
        assert gsig["signers"] == [] and gsig["error"] is not None

        # /federation matches federation.json.
        f = (await c.get("/federation")).json()
        assert f["threshold"] == fed_json["threshold"] and f["n"] == len(fed_json["members"])
        assert f["signblockscript"] == fed_json["signblockscript"]
        assert f["fault_bounds"] == fed_json["fault_bounds"]
        for got, want in zip(f["members"], fed_json["members"], strict=True):
            assert got["signing_pubkey"] == want["signing_pubkey"]
            assert got["identity_pubkey"] == want["identity_pubkey"]
            assert got["name"] == want["name"] and got["watchman_pubkey"] is None
        assert f["peg"] is None and f["fedpegscript"] is None and f["pak"] == []

        # No peg here.
        _is_error(await c.get("/peg/status"), 503, "PegNotRunning")
        _is_error(await c.get("/pegin/address?claim_script=0014" + "00" * 20), 503, "PegNotConfigured")
        _is_error(await c.get(f"/pegouts/{tx.txid_hex}:0"), 503, "PegNotRunning")
        _is_error(await c.get(f"/pegins/{tx.txid_hex}:0"), 404, "PegInNotFound")

        # /health
        h = await c.get("/health")
        assert h.status_code == 200 and h.json()["status"] == "ok"
        assert h.json()["tip"]["height"] >= height

        # /metrics
        m = await c.get("/metrics")
        assert m.status_code == 200
        assert m.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = _parse_prometheus(m.text)
        assert samples[("functionary_tip_height", "")] >= height
        assert (
            samples[("functionary_member_blocks_signed", 'member="0",name="' + fed_json["members"][0]["name"] + '"')]
            >= 1
        )
        assert samples[("functionary_peers_connected", "")] == 0
        assert ("functionary_mempool_transactions", "") in samples
        assert samples[("functionary_peg_running", "")] == 0

    _run(Solo(tmp_path), body)


_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)')


def _parse_prometheus(text: str) -> dict[tuple[str, str], float]:
    assert text.endswith("\n")
    samples: dict[tuple[str, str], float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("gauge", "counter"), line
            typed.add(name)
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), line
            continue
        mt = _SAMPLE.fullmatch(line)
        assert mt is not None, f"not a Prometheus sample: {line!r}"
        assert mt.group(1) in typed, f"{mt.group(1)} has no TYPE line before it"
        samples[(mt.group(1), mt.group(2) or "")] = float(mt.group(3))
    return samples


NASTY = [
    "",
    "0",
    "-1",
    "00" * 31,
    "00" * 33,
    "zz" * 32,
    "g" * 64,
    "0" * 63 + "\u0660",
    "\u0661\u0662",
    "\u00b2",
    "%F0%9F%92%A5",
    "99999999999999999999999999999999",
    "4294967296",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "%00",
    "0x10",
    " 1",
    "1e3",
    "f" * 10_000,
]
NASTY_OUTPOINTS = [
    "00" * 32 + ":-1",
    "00" * 32 + ":4294967296",
    "00" * 32 + ":99999999999999999999",
    "00" * 32,
    ":0",
    "zz" * 32 + ":0",
    "00" * 32 + ":\u0661",
]
PATHS = [
    "/blocks/{}",
    "/block-height/{}",
    "/block/{}",
    "/block/{}/status",
    "/block/{}/header",
    "/block/{}/raw",
    "/block/{}/txids",
    "/block/{}/signatures",
    "/tx/{}",
    "/tx/{}/hex",
    "/tx/{}/status",
    "/tx/{}/merkle-proof",
    "/pegouts/{}",
    "/pegins/{}",
    "/pegin/address?claim_script={}",
]


def test_no_input_makes_the_api_answer_500(tmp_path: Path) -> None:
    async def body(solo: Solo, c: httpx.AsyncClient) -> None:
        await _wait(lambda: solo.node.chain.tip_height >= 1, 10, "a block")
        checked = 0
        for path in PATHS:
            for value in NASTY + NASTY_OUTPOINTS:
                r = await c.get(path.format(value))
                assert r.status_code < 500 or r.status_code == 503, (path, value, r.status_code, r.text)
                if r.status_code >= 400:
                    assert "code" in r.json() and "message" in r.json(), (path, value, r.text)
                checked += 1
        # A few specific answers: well-formed but unknown is 404, malformed is 400.
        _is_error(await c.get("/block/" + "00" * 32), 404, "BlockNotFound")
        _is_error(await c.get("/tx/" + "00" * 32), 404, "TxNotFound")
        _is_error(await c.get("/block/xyz"), 400, "InvalidHash")
        _is_error(await c.get("/blocks/-1"), 400, "InvalidHeight")
        _is_error(await c.get("/block-height/\u00b2"), 400, "InvalidHeight")
        _is_error(await c.get("/pegins/zz:0"), 400, "InvalidOutpoint")
        _is_error(await c.get("/nope"), 404, "NotFound")
        # POST /tx with garbage.
        for raw in (b"", b"zz", b"00", "\u00e9".encode(), b"\xff\xfe", b"01" * 100):
            r = await c.post("/tx", content=raw)
            assert 400 <= r.status_code < 500 and "code" in r.json(), (raw, r.text)
        assert checked == len(PATHS) * (len(NASTY) + len(NASTY_OUTPOINTS))

    _run(Solo(tmp_path), body)


def test_peg_configured_without_mainchain(tmp_path: Path) -> None:
    async def body(solo: Solo, c: httpx.AsyncClient) -> None:
        node = solo.node
        peg = node.federation.peg
        assert peg is not None and node.peg is None
        _is_error(await c.get("/peg/status"), 503, "PegNotRunning")
        _is_error(await c.get("/pegouts/" + "00" * 32 + ":0"), 503, "PegNotRunning")
        m = _parse_prometheus((await c.get("/metrics")).text)
        assert m[("functionary_peg_running", "")] == 0

        # /federation carries the peg's scripts and keys, as federation.json does.
        fed_json = json.loads((solo.dir / "federation.json").read_text())
        f = (await c.get("/federation")).json()
        assert f["fedpegscript"] == fed_json["peg"]["fedpegscript"] == peg.params.fedpegscript.hex()
        assert f["peg"]["watchman_keys"] == fed_json["peg"]["watchman_keys"]
        assert f["peg"]["emergency_keys"] == fed_json["peg"]["emergency_keys"]
        assert f["peg"]["threshold"] == fed_json["peg"]["threshold"]
        assert f["peg"]["csv_delay"] == fed_json["peg"]["csv_delay"]
        assert f["pak"] == fed_json["peg"]["pak"] and len(f["pak"]) == 1
        assert f["members"][0]["watchman_pubkey"] == fed_json["peg"]["watchman_keys"][0]

        # /pegin/address: the peg's own address for that claim script.
        claim = "0014" + "ab" * 20
        r = await c.get(f"/pegin/address?claim_script={claim}")
        assert r.status_code == 200, r.text
        a = r.json()
        assert a["mainchain_address"] == peg.params.pegin_address(bytes.fromhex(claim))
        assert a["mainchain_address"].startswith(peg.params.parent.bech32_hrp + "1")
        other = (await c.get("/pegin/address?claim_script=0014" + "cd" * 20)).json()
        assert other["mainchain_address"] != a["mainchain_address"]
        _is_error(await c.get("/pegin/address?claim_script=zz"), 400, "InvalidClaimScript")
        _is_error(await c.get("/pegin/address?claim_script=abc"), 400, "InvalidClaimScript")
        _is_error(await c.get("/pegin/address"), 400, "InvalidClaimScript")
        _is_error(await c.get("/pegin/address?claim_script=" + "00" * 521), 400, "ClaimScriptTooLong")

    _run(PegSolo(tmp_path), body)


def test_health_is_503_once_the_node_stops(tmp_path: Path) -> None:
    async def main() -> None:
        solo = Solo(tmp_path)
        cfg = MemberConfig.load(solo.dir / "member0" / "member.json")
        fed = Federation.load(cfg.federation_file)
        node = FunctionaryNode(cfg, fed, MemberKeys.load(cfg.keys_file), logging.getLogger("test.api"))
        await node.start()
        app = create_app(node)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://member") as c:
            assert (await c.get("/health")).status_code == 200
            await node.stop()
            _is_error(await c.get("/health"), 503, "NotRunning")

    asyncio.run(main())


def test_vout_shapes_for_pegout_and_confidential_outputs() -> None:
    from consensus.mainchain import REGTEST
    from consensus.standard import pegout_script
    from consensus.transaction import ConfidentialAsset, ConfidentialValue, TxOut
    from functionary import api_views

    genesis = bytes(range(32))
    dest = bytes((0, 20)) + b"\x11" * 20
    out = TxOut.explicit(b"\x22" * 32, 5_000, pegout_script(genesis, dest))
    v = api_views.vout_json(out, REGTEST)
    assert v["scriptpubkey_type"] == "op_return" and v["value"] == 5_000
    assert v["pegout"]["genesis_hash"] == genesis[::-1].hex()
    assert v["pegout"]["scriptpubkey"] == dest.hex()
    assert v["pegout"]["scriptpubkey_address"].startswith(REGTEST.bech32_hrp + "1q")

    blinded = TxOut(
        ConfidentialAsset(b"\x0a" + b"\x33" * 32), ConfidentialValue(b"\x08" + b"\x44" * 32), script_pubkey=dest
    )
    b = api_views.vout_json(blinded, REGTEST)
    assert "value" not in b and "asset" not in b
    assert b["valuecommitment"] == "08" + "44" * 32 and b["assetcommitment"] == "0a" + "33" * 32
    assert b["pegout"] is None and b["scriptpubkey_type"] == "v0_p2wpkh"


def test_cached_read_paths_answer_as_uncached_and_follow_the_tip(tmp_path: Path) -> None:
    """/block/:hash, its header and raw bytes and /block-height/:h come from a
    bounded cache once read: the same bytes as the first (stored) answer,
    served with storage unreachable; the tip height is never stale; misses
    keep the JSON errors."""

    async def body(solo: Solo, c: httpx.AsyncClient) -> None:
        node = solo.node
        await _wait(lambda: node.tip_height >= 3, 10, "three blocks")
        paths = []
        for h in range(node.tip_height + 1):
            bh = (await c.get(f"/block-height/{h}")).text
            paths += [f"/block-height/{h}", f"/block/{bh}", f"/block/{bh}/header", f"/block/{bh}/raw"]
        first = {p: await c.get(p) for p in paths}
        assert all(r.status_code == 200 for r in first.values())
        for p, r in first.items():
            if p.startswith("/block/") and p.count("/") == 2:
                assert r.headers["content-type"] == "application/json" and set(r.json()) == BLOCK_KEYS
                assert r.json()["id"] == p.rsplit("/", 1)[1]
            elif p.endswith("/raw"):
                assert r.headers["content-type"] == "application/octet-stream"
            else:
                assert r.headers["content-type"] == "text/plain; charset=utf-8"

        def unreachable(*_: object) -> None:
            raise AssertionError("storage read on a cache hit")

        saved = node.storage.block_by_hash, node.storage.block_by_height
        node.storage.block_by_hash = unreachable  # type: ignore[method-assign]
        node.storage.block_by_height = unreachable  # type: ignore[method-assign]
        try:
            for p, r in first.items():
                again = await c.get(p)
                assert (again.status_code, again.content, again.headers["content-type"]) == (
                    200,
                    r.content,
                    r.headers["content-type"],
                ), p
        finally:
            node.storage.block_by_hash, node.storage.block_by_height = saved
        # Unknown and malformed hashes are not cached into answers.
        _is_error(await c.get("/block/" + "00" * 32), 404, "BlockNotFound")
        _is_error(await c.get("/block/" + "00" * 32), 404, "BlockNotFound")
        _is_error(await c.get("/block/" + "zz" * 32 + "/header"), 400, "InvalidHash")
        # The tip height follows new blocks.
        seen = int((await c.get("/blocks/tip/height")).text)
        await _wait(lambda: node.tip_height > seen, 10, "a new block")
        assert int((await c.get("/blocks/tip/height")).text) == node.tip_height > seen

    _run(Solo(tmp_path), body)


def test_immutable_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = ImmutableCache(max_entries=3, max_bytes=100)
    for i in range(3):
        cache.put("json", bytes([i]), b"x" * 10)
    assert cache.get("json", b"\x00") == b"x" * 10  # now the most recently used
    cache.put("json", b"\x03", b"y" * 10)
    assert (len(cache), cache.get("json", b"\x01")) == (3, None)  # the least recently used left
    assert cache.get("json", b"\x00") is not None and cache.get("raw", b"\x00") is None
    cache.put("raw", b"\x09", b"z" * 90)
    assert cache.bytes <= 100 and cache.get("raw", b"\x09") == b"z" * 90
    assert cache.put("raw", b"\x0a", b"w" * 101) == b"w" * 101 and cache.get("raw", b"\x0a") is None
    cache.put("raw", b"\x09", b"v" * 5)
    assert cache.get("raw", b"\x09") == b"v" * 5
    assert cache.bytes == sum(len(v) for v in cache._d.values())
