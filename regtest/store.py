"""Persistence in ``<datadir>/regtest.sqlite3`` (SQLite, WAL, file mode 0600).

| table       | columns                                          | written when                          |
|-------------|--------------------------------------------------|---------------------------------------|
| meta        | key, value                                       | creation (network, schema version)    |
| blocks      | seq (arrival order), hash, data (raw block),     | a block enters the index (mined or    |
|             | invalid (1 after invalidateblock)                | submitted); invalid on (re)consider   |
| wallet_keys | id, privkey, pubkey, label, change, address_type | getnewaddress, change outputs         |
| mempool     | seq, tx (raw), time                              | clean shutdown (as Core's mempool.dat)|

On start the chain is rebuilt by re-validating every stored block in arrival
order (as ``-reindex-chainstate`` would), so the UTXO set, transaction index
and best chain are derived, never stored. The genesis block is not stored.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1


class StoreError(Exception):
    """The data directory belongs to something else, or is damaged."""


@dataclass(frozen=True)
class StoredKey:
    privkey: bytes
    pubkey: bytes
    label: str
    change: bool
    address_type: str


class Store:
    def __init__(self, datadir: Path, network: str) -> None:
        datadir.mkdir(parents=True, exist_ok=True)
        self.path = datadir / "regtest.sqlite3"
        fresh = not self.path.exists()
        if fresh:
            # Create it owner-only before SQLite opens it: it holds wallet keys.
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self.transaction():
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS blocks (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " hash BLOB NOT NULL UNIQUE, data BLOB NOT NULL, invalid INTEGER NOT NULL DEFAULT 0)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS wallet_keys (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " privkey BLOB NOT NULL, pubkey BLOB NOT NULL UNIQUE, label TEXT NOT NULL,"
                " change INTEGER NOT NULL, address_type TEXT NOT NULL)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS mempool (seq INTEGER PRIMARY KEY, tx BLOB NOT NULL, time INTEGER NOT NULL)"
            )
            rows = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
            if not rows:
                self.db.execute("INSERT INTO meta VALUES ('network', ?), ('schema', ?)", (network, str(SCHEMA_VERSION)))
            elif rows.get("network") != network:
                raise StoreError(f"{self.path}: holds a {rows.get('network')} chain, not {network}")
            elif int(rows.get("schema", "0")) > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: written by a newer version (schema {rows['schema']})")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- blocks ---------------------------------------------------------------------------

    def blocks(self) -> Iterator[tuple[bytes, bool]]:
        for data, invalid in self.db.execute("SELECT data, invalid FROM blocks ORDER BY seq"):
            yield bytes(data), bool(invalid)

    def add_block(self, block_hash: bytes, data: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO blocks (hash, data) VALUES (?, ?)", (block_hash, data))

    def set_invalid(self, block_hash: bytes, invalid: bool) -> None:
        self.db.execute("UPDATE blocks SET invalid = ? WHERE hash = ?", (int(invalid), block_hash))

    # --- wallet -------------------------------------------------------------------------------

    def wallet_keys(self) -> list[StoredKey]:
        rows = self.db.execute(
            "SELECT privkey, pubkey, label, change, address_type FROM wallet_keys ORDER BY id"
        ).fetchall()
        return [StoredKey(bytes(p), bytes(q), label, bool(c), t) for p, q, label, c, t in rows]

    def add_key(self, key: StoredKey) -> None:
        self.db.execute(
            "INSERT INTO wallet_keys (privkey, pubkey, label, change, address_type) VALUES (?, ?, ?, ?, ?)",
            (key.privkey, key.pubkey, key.label, int(key.change), key.address_type),
        )

    # --- mempool ------------------------------------------------------------------------------

    def save_mempool(self, txs: list[tuple[bytes, int]]) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM mempool")
            self.db.executemany(
                "INSERT INTO mempool (seq, tx, time) VALUES (?, ?, ?)",
                [(i, tx, t) for i, (tx, t) in enumerate(txs)],
            )

    def take_mempool(self) -> list[tuple[bytes, int]]:
        with self.transaction():
            rows = self.db.execute("SELECT tx, time FROM mempool ORDER BY seq").fetchall()
            self.db.execute("DELETE FROM mempool")
        return [(bytes(tx), int(t)) for tx, t in rows]

    def size_on_disk(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += os.stat(str(self.path) + suffix).st_size
        return total

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
