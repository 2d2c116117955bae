"""Storage on SQLite and, through a throwaway cluster, on PostgreSQL.

Blocks here are synthetic bytes with the shape the storage layer relies on:
a header that is a prefix of the raw block and names its parent, and a hash
computed from the header by a function the tests inject (as the runtime will
inject the consensus one).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from functionary.errors import (
    BlockConflict,
    ChainMismatch,
    CorruptDatabase,
    SchemaTooNew,
    SignLockRegression,
    StorageError,
    UtxoNotFound,
)
from functionary.storage import (
    SCHEMA_VERSION,
    MempoolEntry,
    PrecommitLock,
    SignLock,
    Storage,
    Utxo,
    metadata,
    sqlite_url,
)

ROOT = Path(__file__).resolve().parent.parent
CHAIN = b"\x11" * 32


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def txid(n: int) -> bytes:
    return hashlib.sha256(b"tx%d" % n).digest()


def prev_of(header: bytes) -> bytes:
    return header[3:35]


class Chain:
    """Builds blocks and keeps the UTXO set they should leave behind."""

    def __init__(self) -> None:
        self.tip_hash = b"\x00" * 32
        self.height = 0
        self.utxos: dict[tuple[bytes, int], Utxo] = {}
        self.next_tx = 0

    def block(self, spend: int = 0, outputs: int = 2, body: bytes = b"") -> dict[str, Any]:
        h = self.height + 1
        header = b"HDR" + self.tip_hash + h.to_bytes(4, "little")
        ids = []
        created = []
        for _ in range(1 + (1 if spend else 0)):
            t = txid(self.next_tx)
            self.next_tx += 1
            ids.append(t)
            for v in range(outputs):
                created.append((t, v, b"entry-%d-%d" % (self.next_tx, v), h, len(ids) == 1))
        spent = sorted(self.utxos)[:spend]
        return {
            "height": h,
            "block_hash": sha256d(header),
            "raw_block": header + b"BODY" + body + b"".join(ids),
            "raw_header": header,
            "time": 1_700_000_000 + h,
            "signers": [0, 2, 3],
            "txids": ids,
            "spent": spent,
            "created": created,
            "mempool_evict": ids,
        }

    def applied(self, kw: dict[str, Any]) -> None:
        """Record that ``kw`` was committed."""
        self.height = kw["height"]
        self.tip_hash = kw["block_hash"]
        for t, v, e, h, cb in kw["created"]:
            self.utxos[(t, v)] = Utxo(t, v, e, h, cb)
        for op in kw["spent"]:
            del self.utxos[op]

    def commit(self, s: Storage, **block_kw: Any) -> dict[str, Any]:
        kw = self.block(**block_kw)
        s.commit_block(**kw)
        self.applied(kw)
        return kw


def snapshot(s: Storage) -> tuple[Any, ...]:
    return (
        s.tip(),
        s.blocks_from(0, 10_000),
        list(s.load_utxos()),
        s.mempool_list(),
        s.peg_items(),
        s.load_sign_lock(),
        s.load_precommit_lock(),
    )


@pytest.fixture
def store(database_url: str) -> Iterator[Storage]:
    s = Storage.open(database_url, CHAIN)
    yield s
    s.close()


def raw_sql(url: str, *statements: str, params: dict[str, Any] | None = None) -> None:
    """Change the database behind Storage's back, constraints off where possible."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET session_replication_role = replica")  # no FK triggers
            for stmt in statements:
                conn.execute(sa.text(stmt), params or {})
    finally:
        engine.dispose()


def run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=env, timeout=60
    )


# --- basics ----------------------------------------------------------------------------


def test_blocks_utxos_and_index_round_trip(store: Storage, database_url: str) -> None:
    chain = Chain()
    assert store.tip() is None
    assert store.schema_version() == SCHEMA_VERSION
    blocks = [chain.commit(store, spend=min(i, 3)) for i in range(6)]
    assert store.tip() == (6, blocks[-1]["block_hash"])
    for kw in blocks:
        b = store.block_by_height(kw["height"])
        assert b is not None and b == store.block_by_hash(kw["block_hash"])
        assert (b.raw, b.header, b.time, b.signers) == (kw["raw_block"], kw["raw_header"], kw["time"], (0, 2, 3))
        for pos, t in enumerate(kw["txids"]):
            assert store.tx_location(t) == (kw["height"], pos)
    assert [b.height for b in store.blocks_from(2, 3)] == [2, 3, 4]
    assert store.blocks_from(7, 10) == []
    assert store.block_by_height(99) is None and store.block_by_hash(b"\x00" * 32) is None
    assert store.tx_location(b"\x00" * 32) is None
    assert list(store.load_utxos()) == [chain.utxos[k] for k in sorted(chain.utxos)]
    assert list(store.load_utxos(batch=3)) == list(store.load_utxos())
    assert store.utxo_count() == len(chain.utxos)
    some = sorted(chain.utxos)[0]
    assert store.get_utxo(*some) == chain.utxos[some]
    spent = blocks[-1]["spent"][0]
    assert store.get_utxo(*spent) is None
    store.verify_integrity(hash_header=sha256d, prev_of=prev_of)

    before = snapshot(store)
    store.close()
    with Storage.open(database_url, CHAIN) as again:
        assert snapshot(again) == before


def test_output_created_and_spent_in_one_block(store: Storage) -> None:
    chain = Chain()
    kw = chain.block(outputs=1)
    t = kw["txids"][0]
    kw["spent"] = [(t, 0)]  # a child in the same block spends it
    store.commit_block(**kw)
    assert store.get_utxo(t, 0) is None


def test_sqlite_is_wal_and_fully_synchronous(tmp_path: Path) -> None:
    s = Storage.open(sqlite_url(tmp_path / "member-3"), CHAIN)
    try:
        assert (tmp_path / "member-3" / "functionary.sqlite3").exists()
        with s._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        s.close()
    with pytest.raises(ValueError, match="not durable"):
        Storage.open("sqlite://", CHAIN)
    with pytest.raises(ValueError, match="unsupported"):
        Storage.open("mysql://x@localhost/db", CHAIN)


@pytest.mark.postgres
def test_postgres_commits_are_synchronous(postgres_url: str) -> None:
    with Storage.open(postgres_url, CHAIN) as s, s._engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        assert conn.exec_driver_sql("SHOW fsync").scalar() == "on"


# --- refusals and atomicity ------------------------------------------------------------


def test_commit_block_refuses_what_does_not_extend_the_tip(store: Storage) -> None:
    chain = Chain()
    first = chain.block()
    with pytest.raises(BlockConflict, match="height 0 or 1"):
        store.commit_block(**{**first, "height": 2})
    b1 = chain.commit(store)
    chain.commit(store)
    before = snapshot(store)

    nxt = chain.block(spend=1)
    with pytest.raises(BlockConflict, match="does not extend"):
        store.commit_block(**{**nxt, "height": 5})
    with pytest.raises(BlockConflict, match="does not extend"):
        store.commit_block(**{**nxt, "height": 2})
    with pytest.raises(BlockConflict):  # a hash already stored
        store.commit_block(**{**nxt, "block_hash": store.tip()[1]})  # type: ignore[index]
    with pytest.raises(BlockConflict):  # a txid already confirmed
        store.commit_block(**{**nxt, "txids": b1["txids"]})
    with pytest.raises(BlockConflict):  # an output that already exists
        store.commit_block(**{**nxt, "created": [(*sorted(chain.utxos)[0], b"e", 3, False)]})
    with pytest.raises(UtxoNotFound, match="not in the UTXO set"):
        store.commit_block(**{**nxt, "spent": [(txid(999), 0)]})
    with pytest.raises(UtxoNotFound):  # the same outpoint twice
        store.commit_block(**{**nxt, "spent": [nxt["spent"][0], nxt["spent"][0]]})
    with pytest.raises(ValueError):
        store.commit_block(**{**nxt, "raw_header": b"not a prefix"})
    with pytest.raises(ValueError):
        store.commit_block(**{**nxt, "block_hash": b"short"})
    assert snapshot(store) == before
    chain.commit(store, spend=1)  # and the honest one still goes in
    store.verify_integrity(hash_header=sha256d, prev_of=prev_of)


STEPS = ["block", "txs", "created", "spent", "mempool", "peg"]


@pytest.mark.parametrize("step", STEPS)
def test_a_failure_at_any_step_of_commit_block_leaves_nothing(store: Storage, step: str) -> None:
    chain = Chain()
    chain.commit(store)
    chain.commit(store)
    nxt = chain.block(spend=2)
    store.mempool_add(nxt["txids"][0], b"raw", 10, 400, 1.0)
    store.peg_put(b"claimed:a", b"1")
    before = snapshot(store)

    class Injected(Exception):
        pass

    def fail(at: str) -> None:
        if at == step:
            raise Injected(at)

    store.failpoint = fail
    with pytest.raises(Injected):
        store.commit_block(**nxt, peg_updates={b"claimed:a": None, b"claimed:b": b"2"})
    assert snapshot(store) == before

    store.failpoint = None
    store.commit_block(**nxt, peg_updates={b"claimed:a": None, b"claimed:b": b"2"})
    chain.applied(nxt)
    assert store.tip() == (3, nxt["block_hash"])
    assert store.mempool_list() == []
    assert store.peg_items() == [(b"claimed:b", b"2")]
    assert list(store.load_utxos()) == [chain.utxos[k] for k in sorted(chain.utxos)]


# --- durability across SIGKILL ----------------------------------------------------------

CHILD_SIGN_LOCK = """
    import os, signal, sys
    from functionary.storage import Storage
    s = Storage.open(sys.argv[1], bytes.fromhex(sys.argv[2]))
    s.save_sign_lock(7, 3, b"the block we sign")
    os.kill(os.getpid(), signal.SIGKILL)  # right after it returned: no close, no cleanup
"""

CHILD_CRASH_MID_COMMIT = """
    import os, signal, sys, json
    from functionary.storage import Storage
    s = Storage.open(sys.argv[1], bytes.fromhex(sys.argv[2]))
    kw = json.loads(sys.argv[3])
    for k in ("block_hash", "raw_block", "raw_header"):
        kw[k] = bytes.fromhex(kw[k])
    kw["txids"] = [bytes.fromhex(t) for t in kw["txids"]]
    kw["spent"] = [(bytes.fromhex(t), v) for t, v in kw["spent"]]
    kw["created"] = [(bytes.fromhex(t), v, bytes.fromhex(e), h, cb) for t, v, e, h, cb in kw["created"]]
    kw["mempool_evict"] = [bytes.fromhex(t) for t in kw["mempool_evict"]]
    def die(step):
        if step == "spent":
            os.kill(os.getpid(), signal.SIGKILL)
    s.failpoint = die
    s.commit_block(**kw)
    print("not reached")
"""


def test_sign_lock_survives_sigkill_right_after_save(database_url: str) -> None:
    Storage.open(database_url, CHAIN).close()
    child = run_child(CHILD_SIGN_LOCK, database_url, CHAIN.hex())
    assert child.returncode == -signal.SIGKILL, child.stderr
    with Storage.open(database_url, CHAIN) as s:
        assert s.load_sign_lock() == SignLock(7, 3, b"the block we sign")
        s.verify_integrity()


def test_sigkill_in_the_middle_of_commit_block_leaves_the_old_state(database_url: str) -> None:
    chain = Chain()
    with Storage.open(database_url, CHAIN) as s:
        chain.commit(s)
        chain.commit(s)
        before = snapshot(s)
    nxt = chain.block(spend=2)

    def hexify(v: Any) -> Any:
        if isinstance(v, bytes):
            return v.hex()
        if isinstance(v, list | tuple):
            return [hexify(x) for x in v]
        return v

    import json

    child = run_child(
        CHILD_CRASH_MID_COMMIT, database_url, CHAIN.hex(), json.dumps({k: hexify(v) for k, v in nxt.items()})
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    with Storage.open(database_url, CHAIN) as s:
        assert snapshot(s) == before
        s.verify_integrity(hash_header=sha256d, prev_of=prev_of)
        s.commit_block(**nxt)  # the same block commits cleanly afterwards
        assert s.tip() == (3, nxt["block_hash"])


# --- locks, mempool, peg state ------------------------------------------------------------


def test_locks(store: Storage) -> None:
    assert store.load_sign_lock() is None and store.load_precommit_lock() is None
    store.save_sign_lock(5, 0, b"block a")
    store.save_sign_lock(5, 2, b"block b")  # a later round at the same height: the caller's rule
    store.save_sign_lock(6, 0, b"block c")
    assert store.load_sign_lock() == SignLock(6, 0, b"block c")
    with pytest.raises(SignLockRegression):
        store.save_sign_lock(5, 9, b"older")
    assert store.load_sign_lock() == SignLock(6, 0, b"block c")

    store.save_precommit_lock(6, 1, b"\xaa" * 32)
    store.save_precommit_lock(6, 2, b"\xbb" * 32)
    assert store.load_precommit_lock() == PrecommitLock(6, 2, b"\xbb" * 32)
    with pytest.raises(SignLockRegression):
        store.save_precommit_lock(4, 0, b"\xcc" * 32)
    with pytest.raises(ValueError):
        store.save_precommit_lock(7, 0, b"short")


def test_mempool_and_peg_state(store: Storage) -> None:
    a, b, c = txid(100), txid(101), txid(102)
    assert store.mempool_add(b, b"raw b", 300, 800, 2.0)
    assert store.mempool_add(a, b"raw a", 100, 400, 1.0)
    assert not store.mempool_add(a, b"different", 1, 1, 3.0)
    assert store.mempool_add(c, b"raw c", 50, 200, 3.0)
    assert store.mempool_list() == [
        MempoolEntry(a, b"raw a", 100, 400, 1.0),
        MempoolEntry(b, b"raw b", 300, 800, 2.0),
        MempoolEntry(c, b"raw c", 50, 200, 3.0),
    ]
    assert store.mempool_remove([a, txid(999)]) == 1
    assert [e.txid for e in store.mempool_list()] == [b, c]
    # Many in one transaction: those already there (or twice in the batch) are left as they are.
    d, e = txid(103), txid(104)
    assert store.mempool_add_many([(b, b"other b", 1, 1, 9.0), (d, b"raw d", 7, 70, 4.0), (d, b"x", 1, 1, 9.0)]) == 1
    assert store.mempool_add_many([]) == 0
    assert store.mempool_add_many([(e, b"raw e", 8, 80, 5.0)]) == 1
    assert store.mempool_list()[0] == MempoolEntry(b, b"raw b", 300, 800, 2.0)
    assert store.mempool_list()[2:] == [MempoolEntry(d, b"raw d", 7, 70, 4.0), MempoolEntry(e, b"raw e", 8, 80, 5.0)]
    assert store.mempool_remove([d, e]) == 2

    assert store.peg_get(b"k") is None
    store.peg_put(b"k", b"v1")
    store.peg_put(b"k", b"v2")
    store.peg_put(b"other", b"\x00")
    assert store.peg_get(b"k") == b"v2"
    assert store.peg_items(b"k") == [(b"k", b"v2")]
    store.peg_put(b"k", None)
    assert store.peg_get(b"k") is None
    assert store.peg_items() == [(b"other", b"\x00")]


def test_usable_from_asyncio_threads(store: Storage) -> None:
    async def body() -> None:
        ids = [txid(1000 + i) for i in range(24)]
        added = await asyncio.gather(
            *(asyncio.to_thread(store.mempool_add, t, b"raw", i, 4 * i, float(i)) for i, t in enumerate(ids)),
            *(asyncio.to_thread(store.mempool_list) for _ in range(8)),
        )
        assert added[:24] == [True] * 24
        assert [e.txid for e in await asyncio.to_thread(store.mempool_list)] == ids
        for h in range(1, 6):
            await asyncio.to_thread(store.save_sign_lock, h, 0, b"b%d" % h)
        assert await asyncio.to_thread(store.load_sign_lock) == SignLock(5, 0, b"b5")

    asyncio.run(body())


# --- schema versions -------------------------------------------------------------------------


def _columns(url: str) -> dict[str, set[str]]:
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_current_schema(store: Storage, database_url: str) -> None:
    expected = {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
    assert _columns(database_url) == expected


V1_DDL = """
CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE blocks (height BIGINT PRIMARY KEY, hash {blob} NOT NULL UNIQUE, raw {blob} NOT NULL,
    header {blob} NOT NULL, time BIGINT NOT NULL, signers TEXT NOT NULL);
CREATE TABLE block_txs (txid {blob} PRIMARY KEY, height BIGINT NOT NULL REFERENCES blocks (height),
    position INTEGER NOT NULL, UNIQUE (height, position));
CREATE TABLE utxos (txid {blob} NOT NULL, vout INTEGER NOT NULL, entry {blob} NOT NULL, height BIGINT NOT NULL,
    is_coinbase BOOLEAN NOT NULL, PRIMARY KEY (txid, vout));
CREATE TABLE sign_lock (id INTEGER PRIMARY KEY CHECK (id = 1), height BIGINT NOT NULL,
    polka_round INTEGER NOT NULL, raw_block {blob} NOT NULL);
CREATE TABLE precommit_lock (id INTEGER PRIMARY KEY CHECK (id = 1), height BIGINT NOT NULL,
    round INTEGER NOT NULL, block_hash {blob} NOT NULL);
CREATE TABLE mempool (txid {blob} PRIMARY KEY, raw {blob} NOT NULL, fee BIGINT NOT NULL,
    received_at FLOAT NOT NULL)
"""


def test_a_v1_database_built_by_hand_is_migrated(database_url: str) -> None:
    blob = "BYTEA" if database_url.startswith("postgresql") else "BLOB"
    chain = Chain()
    kw = chain.block()
    chain.applied(kw)
    t, v, e, _, _ = kw["created"][0]
    raw_sql(
        database_url,
        *V1_DDL.format(blob=blob).split(";"),
        "INSERT INTO meta VALUES ('schema_version', '1'), ('chain_id', :chain)",
        "INSERT INTO blocks VALUES (1, :hash, :raw, :header, :time, '[0, 2, 3]')",
        "INSERT INTO block_txs VALUES (:t, 1, 0)",
        "INSERT INTO utxos VALUES (:t, :v, :e, 1, TRUE)",
        "INSERT INTO sign_lock VALUES (1, 2, 0, :raw)",
        "INSERT INTO mempool VALUES (:m, :raw, 500, 12.5)",
        params={
            "chain": CHAIN.hex(),
            "hash": kw["block_hash"],
            "raw": kw["raw_block"],
            "header": kw["raw_header"],
            "time": kw["time"],
            "t": t,
            "v": v,
            "e": e,
            "m": txid(77),
        },
    )
    with Storage.open(database_url, CHAIN) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.tip() == (1, kw["block_hash"])
        assert s.get_utxo(t, v) == Utxo(t, v, e, 1, True)
        assert s.load_sign_lock() == SignLock(2, 0, kw["raw_block"])
        assert s.mempool_list() == [MempoolEntry(txid(77), kw["raw_block"], 500, 0, 12.5)]
        s.peg_put(b"new in v2", b"yes")
        s.verify_integrity(hash_header=sha256d, prev_of=prev_of)
        chain.commit(s)
    expected = {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
    assert _columns(database_url) == expected


def test_a_newer_schema_is_refused_by_name(store: Storage, database_url: str) -> None:
    Chain().commit(store)
    store.close()
    raw_sql(database_url, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaTooNew, match=rf"version 99 is newer than this software's {SCHEMA_VERSION}"):
        Storage.open(database_url, CHAIN)
    # Refusing changed nothing: no migration ran, the version is still the newer one.
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar() == "99"
    finally:
        engine.dispose()


def test_another_chain_is_refused(database_url: str) -> None:
    Storage.open(database_url, CHAIN).close()
    with pytest.raises(ChainMismatch, match=CHAIN.hex()):
        Storage.open(database_url, b"\x22" * 32)


def test_a_foreign_database_is_refused(database_url: str) -> None:
    raw_sql(database_url, "CREATE TABLE somebody_elses (x INTEGER)")
    with pytest.raises(StorageError, match="not a functionary database"):
        Storage.open(database_url, CHAIN)


# --- integrity -------------------------------------------------------------------------------


def _corrupted(url: str, *statements: str, params: dict[str, Any] | None = None) -> CorruptDatabase:
    raw_sql(url, *statements, params=params)
    with Storage.open(url, CHAIN) as s, pytest.raises(CorruptDatabase) as info:
        s.verify_integrity(hash_header=sha256d, prev_of=prev_of)
    return info.value


def test_verify_integrity_names_what_is_wrong(database_url: str) -> None:
    chain = Chain()
    with Storage.open(database_url, CHAIN) as s:
        for _ in range(5):
            chain.commit(s, spend=1)
        s.save_sign_lock(6, 0, b"block 6")
        s.save_precommit_lock(6, 0, b"\x66" * 32)
        s.verify_integrity(hash_header=sha256d, prev_of=prev_of)
    url = database_url

    err = _corrupted(url, "UPDATE blocks SET header = :x WHERE height = 2", params={"x": b"\x00"})
    assert any("block 2: stored header is not a prefix" in p for p in err.problems), err
    raw_sql(url, "UPDATE blocks SET header = :h WHERE height = 2", params={"h": chain_header(url, 2)})

    err = _corrupted(url, "UPDATE blocks SET hash = :x WHERE height = 3", params={"x": b"\x33" * 32})
    assert any("block 3: header hashes to" in p for p in err.problems), err
    assert any("block 4: previous hash" in p for p in err.problems), err
    raw_sql(url, "UPDATE blocks SET hash = :h WHERE height = 3", params={"h": sha256d(chain_header(url, 3))})

    err = _corrupted(url, "UPDATE blocks SET signers = '[1, 1]' WHERE height = 4")
    assert err.problems == ["block 4: signers '[1, 1]' is not a list of distinct member indices"]
    raw_sql(url, "UPDATE blocks SET signers = '[0]' WHERE height = 4")

    err = _corrupted(url, "UPDATE sign_lock SET raw_block = :x", params={"x": b""})
    assert any(p.startswith("sign_lock: malformed row") for p in err.problems), err
    raw_sql(url, "UPDATE sign_lock SET raw_block = :x", params={"x": b"block 6"})

    err = _corrupted(url, "UPDATE utxos SET height = 50 WHERE vout = 1")
    assert any("utxos:" in p and "above the tip at 5" in p for p in err.problems), err
    raw_sql(url, "UPDATE utxos SET height = 1 WHERE height = 50")

    # A block lost from the middle of the chain (with its transactions).
    err = _corrupted(url, "DELETE FROM block_txs WHERE height = 3", "DELETE FROM blocks WHERE height = 3")
    assert "blocks: heights jump from 2 to 4" in err.problems, err

    # The message says what is wrong, for the member's log and its operator.
    assert str(err).startswith("corrupt database: ")


def chain_header(url: str, height: int) -> bytes:
    """The header the Chain builder would have stored (it names block height-1's hash)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            raw = conn.execute(sa.text("SELECT raw FROM blocks WHERE height = :h"), {"h": height}).scalar_one()
    finally:
        engine.dispose()
    return bytes(raw)[:39]


def test_a_damaged_sqlite_file_is_reported_as_corrupt(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    chain = Chain()
    with Storage.open(url, CHAIN) as s:
        for _ in range(30):
            chain.commit(s, body=os.urandom(3000))
    path = tmp_path / "functionary.sqlite3"
    assert not (tmp_path / "functionary.sqlite3-wal").exists() or os.path.getsize(str(path) + "-wal") == 0
    size = path.stat().st_size
    with open(path, "r+b") as f:  # scribble over the pages after the schema
        f.seek(2 * 4096)
        f.write(os.urandom(size - 3 * 4096))
    with pytest.raises(CorruptDatabase):
        s = Storage.open(url, CHAIN)
        try:
            s.verify_integrity()
        finally:
            s.close()
