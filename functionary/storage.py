"""Durable storage for one federation member: blocks, the UTXO set, locks.

SQLAlchemy 2 Core over SQLite by default (one file in the member's data
directory, WAL journal, ``synchronous=FULL``) or PostgreSQL by URL
(``postgresql+psycopg://user@host:port/db``, with ``synchronous_commit=on``
forced per session). Everything goes in and out as bytes: this module does not
parse blocks or transactions, so it never imports consensus types. The caller
(the runtime) decides what a block spends and creates; this module makes it
atomic and durable.

The two promises the rest of the system leans on:

* ``commit_block`` writes a block and every state change it causes (its
  transaction index, spent and created outputs, mempool evictions, peg state)
  in ONE database transaction: a crash at any point leaves all or nothing.
* ``save_sign_lock`` returns only after the lock is committed and synced. The
  caller sends a block signature only after it returns, so a member that
  crashes and restarts never signs a second block at a height it signed.

Tables (schema version 2)
-------------------------
==============  ==========================================  ====================================
table           key                                         columns
==============  ==========================================  ====================================
meta            key text                                    value text: ``schema_version``,
                                                            ``chain_id`` (hex)
blocks          height                                      hash (unique, 32 B), raw, header,
                                                            time, signers (JSON list of indices)
block_txs       txid (32 B)                                 height → blocks, position;
                                                            unique (height, position)
utxos           (txid, vout)                                entry, height, is_coinbase
sign_lock       id = 1 (at most one row)                    height, polka_round, raw_block
precommit_lock  id = 1 (at most one row)                    height, round, block_hash (32 B)
mempool         txid (32 B)                                 raw, fee, weight (v2), received_at
peg_state       key (bytes)                                 value (bytes)                  (v2)
==============  ==========================================  ====================================

Blocks are stored from height 1 (the genesis is derived from the chain
parameters; a chain may also store it at height 0), contiguously.

Versions and migrations
-----------------------
``meta.schema_version`` names the schema. Opening a database from a newer
version raises :class:`SchemaTooNew`; an older one is brought forward by
``MIGRATIONS``, an ordered list of steps, all in the same transaction as the
check (so an interrupted migration leaves the old version intact). Each step
spells out its own DDL rather than using the module's current tables, so that
a step means the same thing forever.

======  ===================================================================
version change
======  ===================================================================
1       meta, blocks, block_txs, utxos, sign_lock, precommit_lock, mempool
2       mempool.weight (existing rows get 0); the peg_state table
======  ===================================================================

Threads and asyncio
-------------------
Every method blocks on the database. A ``Storage`` is safe to share between
threads (SQLAlchemy pools connections; SQLite writers serialise on
``BEGIN IMMEDIATE``), so the asyncio runtime calls it through
``await asyncio.to_thread(storage.save_sign_lock, h, r, raw)`` and keeps the
event loop free. ``load_utxos`` is an iterator that reads in batches, each in
its own short transaction: call it at startup, before anything writes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DatabaseError, IntegrityError, SQLAlchemyError

from functionary.errors import (
    BlockConflict,
    ChainMismatch,
    CorruptDatabase,
    SchemaTooNew,
    SignLockRegression,
    StorageError,
    UtxoNotFound,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "MempoolEntry",
    "PrecommitLock",
    "SignLock",
    "Storage",
    "StoredBlock",
    "Utxo",
    "sqlite_url",
]

SCHEMA_VERSION = 2

# --- The current schema ---------------------------------------------------------------
# What the queries below use. It must equal what MIGRATIONS build; a test
# reflects a migrated database and compares.

metadata = sa.MetaData()

meta_t = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
blocks_t = sa.Table(
    "blocks",
    metadata,
    sa.Column("height", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary, nullable=False, unique=True),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("header", sa.LargeBinary, nullable=False),
    sa.Column("time", sa.BigInteger, nullable=False),
    sa.Column("signers", sa.Text, nullable=False),
)
block_txs_t = sa.Table(
    "block_txs",
    metadata,
    sa.Column("txid", sa.LargeBinary, primary_key=True),
    sa.Column("height", sa.BigInteger, sa.ForeignKey("blocks.height"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.UniqueConstraint("height", "position"),
)
utxos_t = sa.Table(
    "utxos",
    metadata,
    sa.Column("txid", sa.LargeBinary, primary_key=True),
    sa.Column("vout", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entry", sa.LargeBinary, nullable=False),
    sa.Column("height", sa.BigInteger, nullable=False),
    sa.Column("is_coinbase", sa.Boolean, nullable=False),
)
sign_lock_t = sa.Table(
    "sign_lock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("height", sa.BigInteger, nullable=False),
    sa.Column("polka_round", sa.Integer, nullable=False),
    sa.Column("raw_block", sa.LargeBinary, nullable=False),
    sa.CheckConstraint("id = 1"),
)
precommit_lock_t = sa.Table(
    "precommit_lock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("height", sa.BigInteger, nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("block_hash", sa.LargeBinary, nullable=False),
    sa.CheckConstraint("id = 1"),
)
mempool_t = sa.Table(
    "mempool",
    metadata,
    sa.Column("txid", sa.LargeBinary, primary_key=True),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("weight", sa.Integer, nullable=False),
)
peg_state_t = sa.Table(
    "peg_state",
    metadata,
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
)


# --- Migrations ------------------------------------------------------------------------


def _migrate_to_v1(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table("meta", md, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text, nullable=False))
    sa.Table(
        "blocks",
        md,
        sa.Column("height", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("header", sa.LargeBinary, nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("signers", sa.Text, nullable=False),
    )
    sa.Table(
        "block_txs",
        md,
        sa.Column("txid", sa.LargeBinary, primary_key=True),
        sa.Column("height", sa.BigInteger, sa.ForeignKey("blocks.height"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.UniqueConstraint("height", "position"),
    )
    sa.Table(
        "utxos",
        md,
        sa.Column("txid", sa.LargeBinary, primary_key=True),
        sa.Column("vout", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entry", sa.LargeBinary, nullable=False),
        sa.Column("height", sa.BigInteger, nullable=False),
        sa.Column("is_coinbase", sa.Boolean, nullable=False),
    )
    sa.Table(
        "sign_lock",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("height", sa.BigInteger, nullable=False),
        sa.Column("polka_round", sa.Integer, nullable=False),
        sa.Column("raw_block", sa.LargeBinary, nullable=False),
        sa.CheckConstraint("id = 1"),
    )
    sa.Table(
        "precommit_lock",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("height", sa.BigInteger, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("block_hash", sa.LargeBinary, nullable=False),
        sa.CheckConstraint("id = 1"),
    )
    sa.Table(
        "mempool",
        md,
        sa.Column("txid", sa.LargeBinary, primary_key=True),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("fee", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    md.create_all(conn)


def _migrate_to_v2(conn: Connection) -> None:
    # Weight lets a proposer fill a block by fee rate without re-parsing
    # every transaction; rows from v1 get 0 and are re-measured on load.
    conn.exec_driver_sql("ALTER TABLE mempool ADD COLUMN weight INTEGER NOT NULL DEFAULT 0")
    md = sa.MetaData()
    sa.Table(
        "peg_state",
        md,
        sa.Column("key", sa.LargeBinary, primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )
    md.create_all(conn)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _migrate_to_v1),
    (2, _migrate_to_v2),
]
"""(version reached, step) in order; the last one reaches SCHEMA_VERSION."""

assert MIGRATIONS[-1][0] == SCHEMA_VERSION and [v for v, _ in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


# --- Rows ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredBlock:
    height: int
    hash: bytes
    raw: bytes
    header: bytes
    time: int
    signers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Utxo:
    txid: bytes
    vout: int
    entry: bytes
    height: int
    is_coinbase: bool


@dataclass(frozen=True, slots=True)
class SignLock:
    height: int
    polka_round: int
    raw_block: bytes


@dataclass(frozen=True, slots=True)
class PrecommitLock:
    height: int
    round: int
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class MempoolEntry:
    txid: bytes
    raw: bytes
    fee: int
    weight: int
    received_at: float


Outpoint = tuple[bytes, int]
CreatedOutput = tuple[bytes, int, bytes, int, bool]  # txid, vout, entry, height, is_coinbase


def sqlite_url(data_dir: str | os.PathLike[str]) -> str:
    """The default database of a member: a SQLite file in its data directory."""
    return f"sqlite:///{Path(data_dir).resolve() / 'functionary.sqlite3'}"


def _hash32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ValueError(f"{what} is 32 bytes")
    return bytes(value)


def _block_row(row: Any) -> StoredBlock:
    return StoredBlock(
        int(row.height),
        bytes(row.hash),
        bytes(row.raw),
        bytes(row.header),
        int(row.time),
        tuple(json.loads(row.signers)),
    )


def _is_corruption(e: BaseException) -> bool:
    text = str(e).lower()
    return "malformed" in text or "not a database" in text or "file is encrypted" in text


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Database errors leave as StorageError subclasses, named."""
    try:
        yield
    except StorageError:
        raise
    except IntegrityError as e:
        raise BlockConflict(f"{what}: {e.orig}") from e
    except DatabaseError as e:
        if _is_corruption(e):
            raise CorruptDatabase([f"{what}: {e.orig}"]) from e
        raise StorageError(f"{what}: {type(e.orig).__name__}: {e.orig}") from e
    except SQLAlchemyError as e:
        raise StorageError(f"{what}: {e}") from e


# --- Storage ---------------------------------------------------------------------------


class Storage:
    """One member's database. Build with :meth:`open`."""

    def __init__(self, engine: Engine, chain_id: bytes) -> None:
        self._engine = engine
        self.chain_id = chain_id
        self.failpoint: Callable[[str], None] | None = None
        """Test hook: called between the steps of ``commit_block`` with the
        step just done ("block", "txs", "created", "spent", "mempool",
        "peg"); raising (or dying) there shows the transaction is atomic."""

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, chain_id: bytes) -> Storage:
        """Open (creating or migrating) the database at ``url`` for the chain
        ``chain_id`` (e.g. its genesis hash). Raises ``SchemaTooNew``,
        ``ChainMismatch`` or ``CorruptDatabase``."""
        if not chain_id:
            raise ValueError("chain_id must not be empty")
        engine = _make_engine(url)
        storage = cls(engine, bytes(chain_id))
        try:
            with _translated("opening the database"):
                storage._prepare()
        except BaseException:
            engine.dispose()
            raise
        return storage

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        with self._read() as conn:
            return _read_version(conn)

    def _prepare(self) -> None:
        with self._write() as conn:
            if self.dialect == "postgresql":
                # Two processes opening one empty database must not both create it.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7262177)")
            version = _read_version(conn)
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"database schema version {version} is newer than this software's {SCHEMA_VERSION}: "
                    "it was written by a newer functionary; upgrade, or point at another database"
                )
            if version == 0:
                tables = sa.inspect(conn).get_table_names()
                if tables:
                    raise StorageError(f"not a functionary database: it has tables {sorted(tables)} but no schema")
            for target, step in MIGRATIONS:
                if target > version:
                    step(conn)
                    _put_meta(conn, "schema_version", str(target))
            stored = conn.execute(sa.select(meta_t.c.value).where(meta_t.c.key == "chain_id")).scalar()
            if stored is None:
                _put_meta(conn, "chain_id", self.chain_id.hex())
            elif stored != self.chain_id.hex():
                raise ChainMismatch(f"database belongs to chain {stored}, not {self.chain_id.hex()}")

    # -- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(functionary_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    def _fail(self, step: str) -> None:
        if self.failpoint is not None:
            self.failpoint(step)

    # -- blocks ---------------------------------------------------------------------------

    def commit_block(
        self,
        height: int,
        block_hash: bytes,
        raw_block: bytes,
        raw_header: bytes,
        time: int,
        signers: Iterable[int],
        txids: Sequence[bytes],
        spent: Iterable[Outpoint],
        created: Iterable[CreatedOutput],
        mempool_evict: Iterable[bytes] = (),
        peg_updates: Mapping[bytes, bytes | None] | None = None,
    ) -> None:
        """Store a block and everything it changes, atomically.

        ``txids`` in block order; ``spent`` outpoints must exist (else
        ``UtxoNotFound``); ``created`` is inserted before ``spent`` is
        removed, so an output created and spent in the same block may appear
        in both lists (or in neither). ``peg_updates`` sets (or, with None,
        deletes) peg_state keys. The block must extend the tip (the first
        stored block is at height 0 or 1), else ``BlockConflict``.
        """
        block_hash = _hash32(block_hash, "block hash")
        if not bytes(raw_block).startswith(bytes(raw_header)) or not raw_header:
            raise ValueError("the raw header must be a non-empty prefix of the raw block")
        signer_list = sorted(set(int(s) for s in signers))
        if any(s < 0 for s in signer_list):
            raise ValueError("signer indices are non-negative")
        tx_rows = [{"txid": _hash32(t, "txid"), "height": height, "position": i} for i, t in enumerate(txids)]
        created_rows = [
            {"txid": _hash32(t, "txid"), "vout": v, "entry": bytes(e), "height": h, "is_coinbase": bool(cb)}
            for t, v, e, h, cb in created
        ]
        spent_list = [(_hash32(t, "txid"), int(v)) for t, v in spent]
        evict = [bytes(t) for t in mempool_evict]
        with _translated(f"committing block {height}"), self._write() as conn:
            tip = conn.execute(sa.select(sa.func.max(blocks_t.c.height))).scalar()
            if tip is None and height not in (0, 1):
                raise BlockConflict(f"the first stored block must be at height 0 or 1, not {height}")
            if tip is not None and height != tip + 1:
                raise BlockConflict(f"block at height {height} does not extend the tip at {tip}")
            conn.execute(
                blocks_t.insert().values(
                    height=height,
                    hash=block_hash,
                    raw=bytes(raw_block),
                    header=bytes(raw_header),
                    time=int(time),
                    signers=json.dumps(signer_list),
                )
            )
            self._fail("block")
            if tx_rows:
                conn.execute(block_txs_t.insert(), tx_rows)
            self._fail("txs")
            if created_rows:
                conn.execute(utxos_t.insert(), created_rows)
            self._fail("created")
            spend = utxos_t.delete().where(utxos_t.c.txid == sa.bindparam("t"), utxos_t.c.vout == sa.bindparam("v"))
            for txid, vout in spent_list:
                # One statement per outpoint: its rowcount is what proves the
                # output existed, and executemany rowcounts are not portable.
                if conn.execute(spend, {"t": txid, "v": vout}).rowcount != 1:
                    raise UtxoNotFound(f"block {height} spends {txid.hex()}:{vout}, which is not in the UTXO set")
            self._fail("spent")
            for chunk in _chunks(evict, 500):
                conn.execute(mempool_t.delete().where(mempool_t.c.txid.in_(chunk)))
            self._fail("mempool")
            for key, value in (peg_updates or {}).items():
                _peg_write(conn, bytes(key), value)
            self._fail("peg")

    def tip(self) -> tuple[int, bytes] | None:
        """(height, hash) of the highest stored block, or None."""
        with _translated("reading the tip"), self._read() as conn:
            row = conn.execute(
                sa.select(blocks_t.c.height, blocks_t.c.hash).order_by(blocks_t.c.height.desc()).limit(1)
            ).first()
        return None if row is None else (int(row.height), bytes(row.hash))

    def block_by_height(self, height: int) -> StoredBlock | None:
        with _translated("reading a block"), self._read() as conn:
            row = conn.execute(sa.select(blocks_t).where(blocks_t.c.height == height)).first()
        return None if row is None else _block_row(row)

    def block_by_hash(self, block_hash: bytes) -> StoredBlock | None:
        with _translated("reading a block"), self._read() as conn:
            row = conn.execute(sa.select(blocks_t).where(blocks_t.c.hash == bytes(block_hash))).first()
        return None if row is None else _block_row(row)

    def blocks_from(self, height: int, limit: int) -> list[StoredBlock]:
        """Up to ``limit`` blocks from ``height`` upwards, in order (catch-up)."""
        with _translated("reading blocks"), self._read() as conn:
            rows = conn.execute(
                sa.select(blocks_t).where(blocks_t.c.height >= height).order_by(blocks_t.c.height).limit(limit)
            ).all()
        return [_block_row(r) for r in rows]

    def tx_location(self, txid: bytes) -> tuple[int, int] | None:
        """(height, position in block) of a confirmed transaction, or None."""
        with _translated("reading the transaction index"), self._read() as conn:
            row = conn.execute(
                sa.select(block_txs_t.c.height, block_txs_t.c.position).where(block_txs_t.c.txid == bytes(txid))
            ).first()
        return None if row is None else (int(row.height), int(row.position))

    # -- the UTXO set -----------------------------------------------------------------------

    def load_utxos(self, batch: int = 5000) -> Iterator[Utxo]:
        """Every unspent output, ordered by (txid, vout), read in batches."""
        after: tuple[bytes, int] | None = None
        c = utxos_t.c
        while True:
            q = sa.select(utxos_t).order_by(c.txid, c.vout).limit(batch)
            if after is not None:
                q = q.where(sa.or_(c.txid > after[0], sa.and_(c.txid == after[0], c.vout > after[1])))
            with _translated("loading the UTXO set"), self._read() as conn:
                rows = conn.execute(q).all()
            for r in rows:
                yield Utxo(bytes(r.txid), int(r.vout), bytes(r.entry), int(r.height), bool(r.is_coinbase))
            if len(rows) < batch:
                return
            after = (bytes(rows[-1].txid), int(rows[-1].vout))

    def get_utxo(self, txid: bytes, vout: int) -> Utxo | None:
        with _translated("reading a UTXO"), self._read() as conn:
            r = conn.execute(sa.select(utxos_t).where(utxos_t.c.txid == bytes(txid), utxos_t.c.vout == vout)).first()
        return (
            None if r is None else Utxo(bytes(r.txid), int(r.vout), bytes(r.entry), int(r.height), bool(r.is_coinbase))
        )

    def utxo_count(self) -> int:
        with _translated("counting UTXOs"), self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(utxos_t)).scalar_one())

    # -- locks ------------------------------------------------------------------------------

    def save_sign_lock(self, height: int, polka_round: int, raw_block: bytes) -> None:
        """Record the block we are about to sign. Returns only once committed
        and synced; send the signature after, never before. A lock below the
        saved height raises ``SignLockRegression``."""
        if height < 0 or polka_round < 0 or not raw_block:
            raise ValueError("a sign-lock has a height, a round and a block")
        with _translated("saving the sign-lock"), self._write() as conn:
            old = conn.execute(sa.select(sign_lock_t.c.height).where(sign_lock_t.c.id == 1)).scalar()
            if old is not None and height < old:
                raise SignLockRegression(f"sign-lock at height {height} is below the saved one at {old}")
            _upsert(conn, sign_lock_t, {"id": 1, "height": height, "polka_round": polka_round, "raw_block": raw_block})

    def load_sign_lock(self) -> SignLock | None:
        with _translated("loading the sign-lock"), self._read() as conn:
            r = conn.execute(sa.select(sign_lock_t).where(sign_lock_t.c.id == 1)).first()
        return None if r is None else SignLock(int(r.height), int(r.polka_round), bytes(r.raw_block))

    def save_precommit_lock(self, height: int, round: int, block_hash: bytes) -> None:
        """Record a precommit, durably, before it is sent. A lock below the
        saved height raises ``SignLockRegression``."""
        block_hash = _hash32(block_hash, "block hash")
        with _translated("saving the precommit lock"), self._write() as conn:
            old = conn.execute(sa.select(precommit_lock_t.c.height).where(precommit_lock_t.c.id == 1)).scalar()
            if old is not None and height < old:
                raise SignLockRegression(f"precommit lock at height {height} is below the saved one at {old}")
            _upsert(conn, precommit_lock_t, {"id": 1, "height": height, "round": round, "block_hash": block_hash})

    def load_precommit_lock(self) -> PrecommitLock | None:
        with _translated("loading the precommit lock"), self._read() as conn:
            r = conn.execute(sa.select(precommit_lock_t).where(precommit_lock_t.c.id == 1)).first()
        return None if r is None else PrecommitLock(int(r.height), int(r.round), bytes(r.block_hash))

    # -- mempool ----------------------------------------------------------------------------

    def mempool_add(self, txid: bytes, raw: bytes, fee: int, weight: int, received_at: float) -> bool:
        """Add a transaction; False (and no change) if it is already there."""
        txid = _hash32(txid, "txid")
        with _translated("adding to the mempool"), self._write() as conn:
            if conn.execute(sa.select(mempool_t.c.txid).where(mempool_t.c.txid == txid)).first() is not None:
                return False
            conn.execute(
                mempool_t.insert().values(txid=txid, raw=bytes(raw), fee=fee, weight=weight, received_at=received_at)
            )
            return True

    def mempool_add_many(self, entries: Sequence[tuple[bytes, bytes, int, int, float]]) -> int:
        """Add (txid, raw, fee, weight, received_at) rows in one transaction
        (one sync for many); rows already there are left as they are.
        Returns how many were added."""
        rows: dict[bytes, dict[str, Any]] = {}
        for txid, raw, fee, weight, received_at in entries:
            key = _hash32(txid, "txid")
            rows.setdefault(
                key, {"txid": key, "raw": bytes(raw), "fee": fee, "weight": weight, "received_at": received_at}
            )
        if not rows:
            return 0
        with _translated("adding to the mempool"), self._write() as conn:
            for chunk in _chunks(list(rows), 500):
                for (present,) in conn.execute(sa.select(mempool_t.c.txid).where(mempool_t.c.txid.in_(chunk))):
                    rows.pop(bytes(present), None)
            if rows:
                conn.execute(mempool_t.insert(), list(rows.values()))
        return len(rows)

    def mempool_remove(self, txids: Iterable[bytes]) -> int:
        """Remove these transactions; returns how many were there."""
        removed = 0
        with _translated("removing from the mempool"), self._write() as conn:
            for chunk in _chunks([bytes(t) for t in txids], 500):
                removed += conn.execute(mempool_t.delete().where(mempool_t.c.txid.in_(chunk))).rowcount
        return removed

    def mempool_list(self) -> list[MempoolEntry]:
        """Every stored transaction, oldest first."""
        with _translated("reading the mempool"), self._read() as conn:
            rows = conn.execute(sa.select(mempool_t).order_by(mempool_t.c.received_at, mempool_t.c.txid)).all()
        return [
            MempoolEntry(bytes(r.txid), bytes(r.raw), int(r.fee), int(r.weight), float(r.received_at)) for r in rows
        ]

    # -- peg state --------------------------------------------------------------------------

    def peg_get(self, key: bytes) -> bytes | None:
        with _translated("reading peg state"), self._read() as conn:
            v = conn.execute(sa.select(peg_state_t.c.value).where(peg_state_t.c.key == bytes(key))).scalar()
        return None if v is None else bytes(v)

    def peg_put(self, key: bytes, value: bytes | None) -> None:
        """Set ``key`` (None deletes it). State that a block changes goes
        through ``commit_block(peg_updates=...)`` instead, atomically."""
        with _translated("writing peg state"), self._write() as conn:
            _peg_write(conn, bytes(key), value)

    def peg_items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with ``prefix``, ordered by key."""
        with _translated("reading peg state"), self._read() as conn:
            rows = conn.execute(sa.select(peg_state_t).order_by(peg_state_t.c.key)).all()
        return [(bytes(r.key), bytes(r.value)) for r in rows if bytes(r.key).startswith(prefix)]

    # -- integrity --------------------------------------------------------------------------

    def verify_integrity(
        self,
        hash_header: Callable[[bytes], bytes] | None = None,
        prev_of: Callable[[bytes], bytes] | None = None,
        batch: int = 1000,
    ) -> None:
        """Check what can be checked without consensus, and with the two
        callables what can with it; raise ``CorruptDatabase`` listing every
        problem found. The runtime calls this at startup and refuses to sign
        if it raises.

        Without callables: the schema version and chain id; the SQLite file's
        own page check; heights contiguous from 0 or 1; hashes 32 bytes and
        unique; each header a prefix of its block; signers a list of distinct
        indices; every indexed transaction in a stored block at a unique
        position; every UTXO at or below the tip; the locks well-formed.
        With ``hash_header(header) -> hash``: every stored hash recomputes.
        With ``prev_of(header) -> prev hash``: every block links to the one
        below it."""
        problems: list[str] = []
        with _translated("verifying the database"), self._read() as conn:
            if self.dialect == "sqlite":
                result = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check").all()]
                if result != ["ok"]:
                    problems.append("sqlite quick_check: " + "; ".join(result[:5]))
                    raise CorruptDatabase(problems)
            version = _read_version(conn)
            if version != SCHEMA_VERSION:
                problems.append(f"meta: schema_version is {version}, expected {SCHEMA_VERSION}")
            chain = conn.execute(sa.select(meta_t.c.value).where(meta_t.c.key == "chain_id")).scalar()
            if chain != self.chain_id.hex():
                problems.append(f"meta: chain_id is {chain!r}, expected {self.chain_id.hex()}")
            tip = self._check_blocks(conn, problems, hash_header, prev_of, batch)
            self._check_index_and_utxos(conn, problems, tip)
            self._check_locks(conn, problems)
        if problems:
            raise CorruptDatabase(problems)

    def _check_blocks(
        self,
        conn: Connection,
        problems: list[str],
        hash_header: Callable[[bytes], bytes] | None,
        prev_of: Callable[[bytes], bytes] | None,
        batch: int,
    ) -> int | None:
        expected: int | None = None
        prev_hash: bytes | None = None
        seen: set[bytes] = set()
        last = -1
        while True:
            rows = conn.execute(
                sa.select(blocks_t).where(blocks_t.c.height > last).order_by(blocks_t.c.height).limit(batch)
            ).all()
            for r in rows:
                h, bh, raw, header = int(r.height), bytes(r.hash), bytes(r.raw), bytes(r.header)
                where = f"block {h}"
                if expected is None:
                    if h not in (0, 1):
                        problems.append(f"blocks: the lowest stored height is {h}, not 0 or 1")
                elif h != expected:
                    problems.append(f"blocks: heights jump from {expected - 1} to {h}")
                    prev_hash = None
                expected = h + 1
                if len(bh) != 32:
                    problems.append(f"{where}: hash is {len(bh)} bytes")
                if bh in seen:
                    problems.append(f"{where}: hash {bh.hex()} is stored twice")
                seen.add(bh)
                if not header or not raw.startswith(header):
                    problems.append(f"{where}: stored header is not a prefix of the raw block")
                try:
                    signers = json.loads(r.signers)
                    ok = isinstance(signers, list) and all(isinstance(s, int) and s >= 0 for s in signers)
                    if not ok or len(set(signers)) != len(signers):
                        raise ValueError
                except ValueError:
                    problems.append(f"{where}: signers {r.signers!r} is not a list of distinct member indices")
                if hash_header is not None and hash_header(header) != bh:
                    problems.append(f"{where}: header hashes to {hash_header(header).hex()}, stored as {bh.hex()}")
                if prev_of is not None and prev_hash is not None and prev_of(header) != prev_hash:
                    problems.append(f"{where}: previous hash {prev_of(header).hex()} is not block {h - 1}'s")
                prev_hash = bh
                last = h
            if len(rows) < batch:
                return None if expected is None else expected - 1

    def _check_index_and_utxos(self, conn: Connection, problems: list[str], tip: int | None) -> None:
        orphans = conn.execute(
            sa.select(sa.func.count())
            .select_from(block_txs_t)
            .where(~sa.exists().where(blocks_t.c.height == block_txs_t.c.height))
        ).scalar_one()
        if orphans:
            problems.append(f"block_txs: {orphans} transactions indexed in blocks that are not stored")
        # Positions in each block run 0..n-1: count and max agree.
        bad = conn.execute(
            sa.select(block_txs_t.c.height)
            .group_by(block_txs_t.c.height)
            .having(sa.func.max(block_txs_t.c.position) + 1 != sa.func.count())
            .limit(5)
        ).all()
        for (h,) in bad:
            problems.append(f"block_txs: positions in block {h} are not 0..n-1")
        c = utxos_t.c
        if tip is not None:
            above = conn.execute(sa.select(sa.func.count()).select_from(utxos_t).where(c.height > tip)).scalar_one()
            if above:
                problems.append(f"utxos: {above} outputs created above the tip at {tip}")
        bad_rows = conn.execute(
            sa.select(sa.func.count()).select_from(utxos_t).where(sa.or_(c.vout < 0, sa.func.length(c.txid) != 32))
        ).scalar_one()
        if bad_rows:
            problems.append(f"utxos: {bad_rows} rows with a malformed outpoint")

    def _check_locks(self, conn: Connection, problems: list[str]) -> None:
        for r in conn.execute(sa.select(sign_lock_t)).all():
            if r.id != 1 or r.height < 0 or r.polka_round < 0 or not r.raw_block:
                problems.append(
                    f"sign_lock: malformed row (id={r.id}, height={r.height}, round={r.polka_round}, "
                    f"{len(r.raw_block or b'')} block bytes)"
                )
        for r in conn.execute(sa.select(precommit_lock_t)).all():
            if r.id != 1 or r.height < 0 or r.round < 0 or len(r.block_hash or b"") != 32:
                problems.append(f"precommit_lock: malformed row (id={r.id}, height={r.height}, round={r.round})")


# --- helpers ---------------------------------------------------------------------------


def _make_engine(url: str) -> Engine:
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if not u.database or u.database == ":memory:":
            raise ValueError("SQLite storage needs a file: an in-memory database is not durable")
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the driver: we emit BEGIN ourselves
            # (below), so DDL in a migration is transactional too.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StorageError(f"SQLite refused WAL mode (got {mode!r}) for {u.database}")
                # FULL: the WAL is fsynced at every commit, so a commit that
                # returned survives a power cut, not just a process crash.
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA foreign_keys=ON")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front, so two writers never
            # deadlock upgrading read locks; readers do not block them (WAL).
            write = conn.get_execution_options().get("functionary_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if backend == "postgresql":
        # synchronous_commit=on whatever the server's default: a commit that
        # returned is on disk (the sign-lock promise).
        return sa.create_engine(u, pool_pre_ping=True, connect_args={"options": "-c synchronous_commit=on"})
    raise ValueError(f"unsupported database backend {backend!r}: use sqlite:/// or postgresql+psycopg://")


def _read_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("meta"):
        return 0
    v = conn.execute(sa.select(meta_t.c.value).where(meta_t.c.key == "schema_version")).scalar()
    if v is None:
        raise CorruptDatabase(["meta: the schema_version row is missing"])
    try:
        return int(v)
    except ValueError:
        raise CorruptDatabase([f"meta: schema_version {v!r} is not a number"]) from None


def _put_meta(conn: Connection, key: str, value: str) -> None:
    _upsert(conn, meta_t, {"key": key, "value": value})


def _upsert(conn: Connection, table: sa.Table, values: dict[str, Any]) -> None:
    keys = [c.name for c in table.primary_key.columns]
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pstmt = pg_insert(table).values(values)
        conn.execute(pstmt.on_conflict_do_update(index_elements=keys, set_={k: pstmt.excluded[k] for k in values}))
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        sstmt = sqlite_insert(table).values(values)
        conn.execute(sstmt.on_conflict_do_update(index_elements=keys, set_={k: sstmt.excluded[k] for k in values}))


def _peg_write(conn: Connection, key: bytes, value: bytes | None) -> None:
    if value is None:
        conn.execute(peg_state_t.delete().where(peg_state_t.c.key == key))
    else:
        _upsert(conn, peg_state_t, {"key": key, "value": bytes(value)})


def _chunks(items: list[bytes], size: int) -> Iterator[list[bytes]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
