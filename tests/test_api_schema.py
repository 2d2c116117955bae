"""Schemathesis against a running member: no input makes the API answer 500.

A 1-of-1 devnet (a real member process with its peg and the embedded regtest
mainchain) serves its OpenAPI schema; schemathesis generates requests from it
(the schema's examples, its coverage phase of boundary and malformed values,
then random fuzzing, positive and negative) and checks every answer is not a
server error. The member's log must then hold no traceback.

The seed is printed and can be fixed with SCHEMATHESIS_SEED to replay a run.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.devnet import running_devnet, wait_for

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def member_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("schema") / "devnet"
    args = ("--block-interval", "1", "--mainchain-block-interval", "0", "--pegin-min-depth", "2")
    with running_devnet(data, 1, 1, *args) as (_, info):
        url = info["members"][0]["api"]

        def past_genesis() -> bool:
            try:
                return int(httpx.get(f"{url}/blocks/tip/height", timeout=2).text) >= 2
            except (httpx.HTTPError, ValueError):
                return False

        wait_for(past_genesis, 60, "the member past genesis")
        yield url, data


def test_schemathesis_finds_no_server_error(member_url: tuple[str, Path], tmp_path: Path) -> None:
    url, data = member_url
    schema = httpx.get(f"{url}/openapi.json", timeout=5).json()
    paths = set(schema["paths"])
    # The schema documents the whole surface, so the run covers all of it.
    assert {"/blocks/tip/height", "/block/{block_hash}", "/tx", "/pegouts", "/federation", "/peg/status"} <= paths

    seed = int(os.environ.get("SCHEMATHESIS_SEED", random.randrange(2**31)))
    print(f"schemathesis seed: {seed} (SCHEMATHESIS_SEED={seed} replays it)")
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [str(st), "run", f"{url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", str(EXAMPLES),
         "--seed", str(seed), "--phases", "examples,coverage,fuzzing", "--workers", "1",
         "--generation-database", "none", "--request-timeout", "20", "--no-color",
         "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = result.stdout + result.stderr
    print(out[-3000:])
    assert result.returncode == 0, f"seed {seed}\n{out[-6000:]}"
    # Every operation was exercised, not skipped.
    report = (tmp_path / "junit.xml").read_text()
    assert report.count("<testcase") >= len(paths), report[:2000]

    # A 4xx is an answer; a traceback in the member's log would be a 500 hidden.
    logs = "\n".join(p.read_text(errors="replace") for p in data.rglob("*.log"))
    assert "Traceback" not in logs, logs[-4000:]


def test_outpoint_indexes_beyond_elements_30_bits_are_refused(member_url: tuple[str, Path]) -> None:
    """Schemathesis' first find: such an index made /pegins and /pegouts answer 500."""
    url, _ = member_url
    for path in ("/pegins", "/pegouts"):
        for vout, status in ((2**30 - 1, {404}), (2**30, {400}), (3356186053, {400}), (2**32 - 1, {400})):
            r = httpx.get(f"{url}{path}/{'ab' * 32}:{vout}", timeout=5)
            assert r.status_code in status, (path, vout, r.status_code, r.text)
            if r.status_code == 400:
                assert r.json()["code"] == "InvalidOutpoint"
