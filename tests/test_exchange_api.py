"""The exchange API (POST /pegouts): who may peg out, and how often.

* The gate, with the time passed in: every signed field is covered (changing
  any one of them breaks the signature), the five-minute window, replays,
  token-bucket rate limits, idempotency answers and their expiry.
* In process, a 1-of-1 federation with a peg and one registered exchange: a
  PAK peg-out is accepted (202) and reaches a block; each refusal has its
  status and code (401 for every authentication failure, 413 unread, 400,
  422, 429 with Retry-After); an idempotent retry, also a concurrent one,
  returns the first answer and submits once; unauthenticated floods do not
  spend the exchange's budget; POST /tx refuses peg-outs on such a federation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from coincurve import PrivateKey
from nacl.signing import SigningKey

from consensus.peg import pak_destinations, pak_pegout_script, whitelist_proof
from consensus.transaction import OutPoint, Transaction
from functionary.api import create_app
from functionary.cli import PegOptions, init_federation
from functionary.config import ExchangeInfo
from functionary.errors import (
    BadSignature,
    IdempotencyKeyReused,
    MissingAuthentication,
    RateLimited,
    ReplayedRequest,
    StaleTimestamp,
    UnknownExchange,
)
from functionary.exchange_api import (
    HEADER_ID,
    HEADER_IDEMPOTENCY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    ExchangeGate,
    sign_request,
)
from functionary.txbuild import Coin, build_p2wpkh_spend, p2wpkh_for
from functionary.wallet import ExchangeKey, pak_pegout_key
from tests.test_api import PegSolo, _is_error
from tests.test_runtime import FREE, _free_port, _wait

CHAIN = b"\xc4" * 32
KEY = SigningKey(b"\x01" * 32)
OTHER = SigningKey(b"\x02" * 32)
T = 1_800_000_000.0


def _gate(**kw: int) -> ExchangeGate:
    info = ExchangeInfo("acme", bytes(KEY.verify_key), **kw)
    return ExchangeGate.for_exchanges(CHAIN, (info,))


def _signed(body: bytes = b'{"tx": "00"}', *, key: SigningKey = KEY, idem: str = "", ts: float = T, **kw: str):
    headers: dict[str, str | None] = dict(
        sign_request(key, CHAIN, "acme", body, timestamp=int(ts), idempotency_key=idem)
    )
    headers.setdefault(HEADER_IDEMPOTENCY, None)
    headers.update(kw)
    return headers


# --- The gate ---------------------------------------------------------------------------


def test_a_signed_request_authenticates_and_every_field_is_covered() -> None:
    gate = _gate()
    body = b'{"tx": "00"}'
    auth = gate.authenticate("POST", "/pegouts", _signed(body, idem="k1"), body, T)
    assert auth.exchange.id == "acme" and auth.idempotency_key == "k1"
    assert auth.body_hash == hashlib.sha256(body).digest()

    good = _signed(body, idem="k1")
    # Each change below keeps the signature but alters what it must cover.
    cases: list[tuple[str, str, dict[str, str | None], bytes]] = [
        ("GET", "/pegouts", good, body),
        ("POST", "/pegouts?x=1", good, body),
        ("POST", "/pegouts", {**good, HEADER_TIMESTAMP: str(int(T) + 1)}, body),
        ("POST", "/pegouts", {**good, HEADER_IDEMPOTENCY: "k2"}, body),
        ("POST", "/pegouts", {**good, HEADER_IDEMPOTENCY: None}, body),
        ("POST", "/pegouts", good, b'{"tx": "01"}'),
    ]
    for method, path, headers, b in cases:
        with pytest.raises(BadSignature):
            gate.authenticate(method, path, headers, b, T)
    # Another federation's chain id, another key.
    other_chain = ExchangeGate.for_exchanges(b"\xc5" * 32, tuple(gate.exchanges.values()))
    with pytest.raises(BadSignature):
        other_chain.authenticate("POST", "/pegouts", good, body, T)
    with pytest.raises(BadSignature):
        gate.authenticate("POST", "/pegouts", _signed(body, key=OTHER), body, T)


def test_missing_malformed_and_unknown_credentials() -> None:
    gate = _gate()
    good = _signed()
    body = b'{"tx": "00"}'
    for header in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE):
        with pytest.raises(MissingAuthentication, match=header):
            gate.authenticate("POST", "/pegouts", {**good, header: None}, body, T)
    for header, value in (
        (HEADER_TIMESTAMP, "-5"),
        (HEADER_TIMESTAMP, "1.5"),
        (HEADER_SIGNATURE, "zz" * 64),
        (HEADER_SIGNATURE, "00" * 63),
        (HEADER_IDEMPOTENCY, "has space"),
        (HEADER_IDEMPOTENCY, "x" * 65),
    ):
        with pytest.raises(MissingAuthentication):
            gate.authenticate("POST", "/pegouts", {**good, header: value}, body, T)
    with pytest.raises(UnknownExchange):
        gate.authenticate("POST", "/pegouts", {**good, HEADER_ID: "nobody"}, body, T)


def test_the_five_minute_window() -> None:
    gate = _gate()
    body = b'{"tx": "00"}'
    for skew in (-300, 0, 300):
        gate.authenticate("POST", "/pegouts", _signed(body, ts=T + skew), body, T)
    for skew in (-301, 301, -86_400):
        with pytest.raises(StaleTimestamp):
            gate.authenticate("POST", "/pegouts", _signed(body, ts=T + skew), body, T)


def test_replays_are_refused_until_the_timestamp_has_expired() -> None:
    gate = _gate()
    body = b'{"tx": "00"}'
    headers = _signed(body)
    auth = gate.authenticate("POST", "/pegouts", headers, body, T)
    gate.check_replay(auth, T)
    with pytest.raises(ReplayedRequest):
        gate.check_replay(gate.authenticate("POST", "/pegouts", headers, body, T + 299), T + 299)
    # Past two windows the entry is dropped, and the timestamp itself is stale.
    gate.check_replay(_gate().authenticate("POST", "/pegouts", _signed(body, ts=T + 700), body, T + 700), T + 700)
    assert auth.signature not in gate._seen
    with pytest.raises(StaleTimestamp):
        gate.authenticate("POST", "/pegouts", headers, body, T + 700)


def test_rate_limit_is_a_token_bucket_per_exchange() -> None:
    gate = _gate(requests_per_minute=60, burst=3)
    exchange = gate.exchanges["acme"]
    for _ in range(3):
        gate.charge(exchange, T)
    with pytest.raises(RateLimited) as e:
        gate.charge(exchange, T)
    assert 0.9 < e.value.retry_after <= 1.0
    gate.charge(exchange, T + 1.0)  # one token back after a second
    with pytest.raises(RateLimited):
        gate.charge(exchange, T + 1.0)
    # A clock that steps back never mints tokens.
    with pytest.raises(RateLimited):
        gate.charge(exchange, T - 100)
    for _ in range(3):  # refills to the burst, no further
        gate.charge(exchange, T + 1000)
    with pytest.raises(RateLimited):
        gate.charge(exchange, T + 1000)


def test_idempotency_answers_are_kept_per_key_and_body() -> None:
    gate = _gate()
    body = b'{"tx": "00"}'
    auth = gate.authenticate("POST", "/pegouts", _signed(body, idem="k"), body, T)
    assert gate.remembered(auth, T) is None
    gate.remember(auth, 202, {"txid": "ab"}, T)
    first = gate.remembered(auth, T + 10)
    assert first is not None and (first.status, first.content) == (202, {"txid": "ab"})
    other = b'{"tx": "01"}'
    with pytest.raises(IdempotencyKeyReused):
        gate.remembered(gate.authenticate("POST", "/pegouts", _signed(other, idem="k"), other, T), T)
    assert gate.remembered(auth, T + 24 * 3600 + 1) is None  # expired after a day
    # No key, nothing remembered.
    plain = gate.authenticate("POST", "/pegouts", _signed(body), body, T)
    gate.remember(plain, 202, {}, T)
    assert gate.remembered(plain, T) is None


# --- In process: a 1-of-1 federation with a peg and one exchange ------------------------


class ExchangeSolo(PegSolo):
    def __init__(self, tmp: Path, block_interval: float = 0.2) -> None:
        self.dir = tmp
        init_federation(
            tmp, 1, 1, p2p_port=_free_port(), api_port=_free_port(), block_interval=block_interval,
            round_timeout=1.0, free_coins=FREE, peg=PegOptions(),
        )  # fmt: skip
        faucet = json.loads((tmp / "faucet.json").read_text())
        self.faucet = PrivateKey(bytes.fromhex(faucet["key"]))
        self.exchange = ExchangeKey.load(tmp / "exchanges" / "exchange0.json")
        assert self.exchange.api_key is not None
        self.api_key: SigningKey = self.exchange.api_key
        self.next_key = 0

    def pegout_tx(self, coin: Coin, amount: int = 20_000_000, *, corrupt_proof: bool = False) -> Transaction:
        fed = self.node.federation
        assert fed.peg is not None
        peg = fed.peg.params
        pubkey, tweak = pak_pegout_key(self.exchange.online_key, self.exchange.offline_pubkey, self.next_key)
        self.next_key += 1
        proof = whitelist_proof(peg.pak, 0, pubkey, self.exchange.online_key, tweak)
        if corrupt_proof:
            proof = proof[:-1] + bytes([proof[-1] ^ 1])
        script = pak_pegout_script(peg.parent_genesis_hash, pak_destinations(pubkey)[1], pubkey, proof)
        return build_p2wpkh_spend([coin], [(script, amount)], 2_000, self.asset)

    def headers(self, body: bytes, *, idem: str = "", key: SigningKey | None = None, **kw: int) -> dict[str, str]:
        return sign_request(
            key or self.api_key, self.node.federation.chain_id, "exchange0", body, idempotency_key=idem, **kw
        )


def _run(tmp: Path, body: Callable[[ExchangeSolo, httpx.AsyncClient, list[Coin]], Awaitable[None]]) -> None:
    solo = ExchangeSolo(tmp)

    async def main() -> None:
        node = await solo.start()
        try:
            # Split the faucet coin so each case spends its own confirmed coin.
            owner = PrivateKey(b"\x0c" * 32)
            split = build_p2wpkh_spend(
                [solo.genesis_coin()], [(p2wpkh_for(owner), 50_000_000)] * 12, 10_000, solo.asset
            )
            await node.submit_transaction(split)
            await _wait(lambda: split.txid not in node.mempool, 10, "the split to be mined")
            coins = [Coin(OutPoint(split.txid, i), 50_000_000, owner) for i in range(12)]
            app = create_app(node)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://member") as c:
                await body(solo, c, coins)
        finally:
            await solo.node.stop()

    asyncio.run(main())


def _body(tx: Transaction) -> bytes:
    return json.dumps({"tx": tx.serialize().hex()}).encode()


def test_a_registered_exchange_pegs_out_and_the_peg_out_reaches_a_block(tmp_path: Path) -> None:
    async def body(solo: ExchangeSolo, c: httpx.AsyncClient, coins: list[Coin]) -> None:
        node = solo.node
        tx = solo.pegout_tx(coins[0])
        raw = _body(tx)
        r = await c.post("/pegouts", content=raw, headers=solo.headers(raw))
        assert r.status_code == 202, r.text
        answer = r.json()
        assert answer["exchange"] == "exchange0" and answer["txid"] == tx.txid_hex
        assert answer["status"] == "received"
        assert [p["id"] for p in answer["pegouts"]] == [f"{tx.txid_hex}:0"]
        assert answer["pegouts"][0]["value"] == 20_000_000
        assert answer["pegouts"][0]["scriptpubkey_address"].startswith("bcrt1q")
        assert tx.txid in node.mempool
        await _wait(lambda: tx.txid not in node.mempool, 10, "the peg-out to be mined")
        loc = await asyncio.to_thread(node.storage.tx_location, tx.txid)
        assert loc is not None
        # The same transaction again, under an idempotency key (without one,
        # Ed25519's deterministic signature in the same second is a replay):
        # the chain already has it.
        r = await c.post("/pegouts", content=raw, headers=solo.headers(raw, idem="again"))
        assert r.status_code == 200 and r.json()["status"] == "in_block"
        # /federation publishes the exchange's API key.
        fed = (await c.get("/federation")).json()
        assert fed["exchanges"] == [
            {"id": "exchange0", "api_pubkey": bytes(solo.api_key.verify_key).hex(), "requests_per_minute": 60}
        ]

    _run(tmp_path, body)


def test_every_refusal_has_its_status_and_code(tmp_path: Path) -> None:
    async def body(solo: ExchangeSolo, c: httpx.AsyncClient, coins: list[Coin]) -> None:
        node = solo.node
        tx = solo.pegout_tx(coins[0])
        raw = _body(tx)
        good = solo.headers(raw)

        _is_error(await c.post("/pegouts", content=raw), 401, "MissingAuthentication")
        _is_error(await c.post("/pegouts", content=raw, headers={**good, HEADER_ID: "mallory"}), 401, "UnknownExchange")
        _is_error(
            await c.post("/pegouts", content=raw, headers=solo.headers(raw, key=SigningKey(b"\x09" * 32))),
            401,
            "BadSignature",
        )
        old = solo.headers(raw, timestamp=int(time.time()) - 301)
        _is_error(await c.post("/pegouts", content=raw, headers=old), 401, "StaleTimestamp")
        # Signed for another body: the signature covers the body's hash.
        other = _body(solo.pegout_tx(coins[1]))
        _is_error(await c.post("/pegouts", content=other, headers=good), 401, "BadSignature")
        assert len(node.mempool) == 0

        # 413 from the declared length, before the body is read.
        r = await c.post("/pegouts", content=b"x" * 2_100_001, headers=good)
        _is_error(r, 413, "BodyTooLarge")

        for bad in (b"not json", b'{"tx": 5}', b'{"tx": "zz"}', b'{"tx": "00"}', b'{"tx": "", "x": 1}'):
            _is_error(await c.post("/pegouts", content=bad, headers=solo.headers(bad)), 400, "InvalidPegoutRequest")

        plain = build_p2wpkh_spend([coins[2]], [(p2wpkh_for(PrivateKey(b"\x0d" * 32)), 1000)], 1000, solo.asset)
        raw_plain = _body(plain)
        _is_error(await c.post("/pegouts", content=raw_plain, headers=solo.headers(raw_plain)), 422, "NoPegout")

        # Authenticated, but the chain refuses a corrupted whitelist proof: the
        # consensus rule's name, as POST /tx would give it.
        bad_proof = _body(solo.pegout_tx(coins[3], corrupt_proof=True))
        r = await c.post("/pegouts", content=bad_proof, headers=solo.headers(bad_proof))
        assert r.status_code == 400 and r.json()["code"] not in ("InvalidPegoutRequest", "NoPegout"), r.text

        # A replay of an accepted request without an idempotency key.
        assert (await c.post("/pegouts", content=raw, headers=good)).status_code == 202
        _is_error(await c.post("/pegouts", content=raw, headers=good), 401, "ReplayedRequest")

        # POST /tx does not take peg-outs on a federation with exchanges.
        r = await c.post("/tx", content=solo.pegout_tx(coins[4]).serialize().hex())
        _is_error(r, 403, "PegoutNeedsExchangeApi")
        assert [e.txid for e in node.mempool.entries()] == [tx.txid]

    _run(tmp_path, body)


def test_idempotent_retries_return_the_first_answer_and_submit_once(tmp_path: Path) -> None:
    async def body(solo: ExchangeSolo, c: httpx.AsyncClient, coins: list[Coin]) -> None:
        node = solo.node
        tx = solo.pegout_tx(coins[0])
        raw = _body(tx)
        headers = solo.headers(raw, idem="order-1")
        first = await c.post("/pegouts", content=raw, headers=headers)
        assert first.status_code == 202
        # The very same request again (a client retry after a lost answer),
        # then a newly signed one with the same key.
        again = await c.post("/pegouts", content=raw, headers=headers)
        resigned = await c.post("/pegouts", content=raw, headers=solo.headers(raw, idem="order-1"))
        for r in (again, resigned):
            assert (r.status_code, r.json()) == (202, first.json())
        # The key with another body.
        other = _body(solo.pegout_tx(coins[1]))
        _is_error(
            await c.post("/pegouts", content=other, headers=solo.headers(other, idem="order-1")),
            422,
            "IdempotencyKeyReused",
        )
        # An error is an answer too: the retry gets the same refusal.
        plain = _body(build_p2wpkh_spend([coins[2]], [(p2wpkh_for(solo.faucet), 1000)], 1000, solo.asset))
        h = solo.headers(plain, idem="order-2")
        r1 = await c.post("/pegouts", content=plain, headers=h)
        r2 = await c.post("/pegouts", content=plain, headers=h)
        assert r1.status_code == r2.status_code == 422 and r1.json() == r2.json()

        # Concurrent retries of one request: one submission, one answer. (Each
        # retry is charged to the budget: 9 requests in this test, burst 10.)
        tx3 = solo.pegout_tx(coins[3])
        raw3 = _body(tx3)
        h3 = solo.headers(raw3, idem="order-3")
        answers = await asyncio.gather(*(c.post("/pegouts", content=raw3, headers=h3) for _ in range(3)))
        assert {r.status_code for r in answers} == {202}
        assert all(r.json() == answers[0].json() for r in answers)
        assert {e.txid for e in node.mempool.entries()} <= {tx.txid, tx3.txid}
        assert tx3.txid in node.mempool or await asyncio.to_thread(node.storage.tx_location, tx3.txid)

    _run(tmp_path, body)


def test_rate_limit_counts_only_authenticated_requests(tmp_path: Path) -> None:
    async def body(solo: ExchangeSolo, c: httpx.AsyncClient, coins: list[Coin]) -> None:
        exchange = solo.node.federation.exchanges[0]
        assert exchange.burst == 10
        bad = b"not json"
        # A flood in the exchange's name, unsigned or signed by someone else.
        for i in range(3 * exchange.burst):
            forged = solo.headers(bad, key=SigningKey(bytes([i + 1]) * 32))
            _is_error(await c.post("/pegouts", content=bad, headers=forged), 401, "BadSignature")
        # The exchange's own budget is whole: burst requests, then 429.
        for i in range(exchange.burst):
            b = f"not json {i}".encode()  # each its own request, not a replay
            _is_error(await c.post("/pegouts", content=b, headers=solo.headers(b)), 400, "InvalidPegoutRequest")
        r = await c.post("/pegouts", content=bad, headers=solo.headers(bad))
        _is_error(r, 429, "RateLimited")
        assert 1 <= int(r.headers["retry-after"]) <= 2

    _run(tmp_path, body)


def test_a_peg_out_in_the_mempool_reads_as_received(tmp_path: Path) -> None:
    """/pegouts/:id before any block: no block comes for an hour here."""
    solo = ExchangeSolo(tmp_path, block_interval=3600)

    async def main() -> None:
        node = await solo.start()
        try:
            app = create_app(node)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://member") as c:
                tx = solo.pegout_tx(solo.genesis_coin())
                raw = _body(tx)
                assert (await c.post("/pegouts", content=raw, headers=solo.headers(raw))).status_code == 202
                r = await c.get(f"/pegouts/{tx.txid_hex}:0")
                assert r.status_code == 200, r.text
                got = r.json()
                assert (got["status"], got["amount"], got["stages"]) == (
                    "received",
                    20_000_000,
                    [{"stage": "received", "in_mempool": True}],
                )
                assert got["destination_address"].startswith("bcrt1q")
                # The change output is no peg-out; without a peg runtime, 503.
                _is_error(await c.get(f"/pegouts/{tx.txid_hex}:1"), 503, "PegNotRunning")
                assert node.tip_height == 0
        finally:
            await node.stop()

    asyncio.run(main())


def test_the_exchange_registry_in_the_federation_file(tmp_path: Path) -> None:
    """init registers one exchange per PAK key; a bad registry is a typed
    config error naming the field; the registry is not in the chain id."""
    from functionary.config import ConfigInvalid, Federation

    ExchangeSolo(tmp_path)
    path = tmp_path / "federation.json"
    fed = Federation.load(path)
    key = ExchangeKey.load(tmp_path / "exchanges" / "exchange0.json")
    assert key.api_key is not None
    assert [(e.id, e.api_pubkey) for e in fed.exchanges] == [("exchange0", bytes(key.api_key.verify_key))]
    raw = json.loads(path.read_text())
    good = raw["exchanges"][0]
    for exchanges, field in (
        ([{**good, "id": "has space"}], "exchanges[0].id"),
        ([{**good, "api_pubkey": "00" * 31}], "exchanges[0].api_pubkey"),
        ([{**good, "requests_per_minute": 0}], "exchanges[0].requests_per_minute"),
        ([good, {**good, "api_pubkey": "11" * 32}], "ids must be unique"),
        ([good, {**good, "id": "other"}], "its own api_pubkey"),
        (["nope"], "exchanges[0]"),
        ("nope", "exchanges"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**raw, "exchanges": exchanges}))
        with pytest.raises(ConfigInvalid, match=re.escape(field)):
            Federation.load(bad)
    # Registering another exchange keeps the chain: the id covers consensus only.
    more = tmp_path / "more.json"
    more.write_text(json.dumps({**raw, "exchanges": [good, {"id": "b", "api_pubkey": "22" * 32}]}))
    assert Federation.load(more).chain_id == fed.chain_id
