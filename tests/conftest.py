"""Shared fixtures. Keep this file small and generic.

* ``postgres_cluster``: one throwaway PostgreSQL server per test session
  (see tests/pg.py); tests that use it skip only when the server binaries
  are absent.
* ``postgres_url``: a fresh, empty database on that server.
* ``database_url``: parametrized over SQLite (a file in ``tmp_path``) and
  PostgreSQL (marked ``postgres``), for tests that must pass on both.
* ``process_federation``: a factory of federations of real member processes
  (tests/federation.py), with teardown invariants; kills every child.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.pg import PgCluster, find_pg_bin

if TYPE_CHECKING:
    from tests.federation import ProcessFederation

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


# --- real member processes (tests/federation.py) -------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Kept on the item so fixtures can tell whether the test body failed.
    report: pytest.TestReport = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def process_federation(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ProcessFederation]]:
    """``make(n, m, **options) -> ProcessFederation`` (tests/federation.py).

    At teardown, when the test body passed, every federation made must hold
    its invariants (same chain, no double signature, no fork, no unexpected
    exit or error line); whatever happened, every member process is killed.
    """
    from tests.federation import ProcessFederation

    made: list[ProcessFederation] = []

    def make(n: int, m: int, **options: Any) -> ProcessFederation:
        fed = ProcessFederation(tmp_path / f"federation{len(made)}", n, m, **options)
        made.append(fed)
        return fed

    try:
        yield make
        call = getattr(request.node, "rep_call", None)
        if call is not None and call.passed:
            for fed in made:
                fed.assert_invariants()
    finally:
        for fed in made:
            fed.close()
