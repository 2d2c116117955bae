"""Shared fixtures. Keep this file small and generic.

* ``postgres_cluster``: one throwaway PostgreSQL server per test session
  (see tests/pg.py); tests that use it skip only when the server binaries
  are absent.
* ``postgres_url``: a fresh, empty database on that server.
* ``database_url``: parametrized over SQLite (a file in ``tmp_path``) and
  PostgreSQL (marked ``postgres``), for tests that must pass on both.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.pg import PgCluster, find_pg_bin

_db_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PgCluster]:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    with PgCluster(bin_dir) as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PgCluster) -> str:
    return postgres_cluster.create_database(f"test_{next(_db_names)}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db')}/functionary.sqlite3"
    return str(request.getfixturevalue("postgres_url"))
