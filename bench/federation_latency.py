"""An 11-of-15 federation of 15 member processes on this machine: block round
latency, and how fast a member 1,000 blocks behind catches up.

    metric                          unit     what
    round_latency_p50 / _p99        ms       per (block, member): the member's
                                             commit, from the block's proposal
    round_latency_all_p50 / _p99    ms       per block: until the last of the
                                             15 members committed it
    catchup_rate                    blocks/s a member with an empty database,
                                             from its first block request to the
                                             commit of the last missing block
    catchup_rate_from_spawn         blocks/s the same, from process spawn
                                             (interpreter start and handshakes
                                             included)

How latency is measured. Nothing in functionary/ logs the proposal, so the
proposal instant is taken from the block header: with a whole-second
``block_interval`` (1 s here) the proposer schedules its proposal at exactly
``parent.time + block_interval`` and stamps the header with that second,
provided it committed the parent before then. Only blocks where that holds
(the parent's commit logged by the proposer before the header time, polka in
round 0, header time = parent's + 1) are counted; latency is each member's
``event=commit`` log timestamp (ms) minus the header time. The proposer
acts on its next 0.1 s tick, so the figures overstate latency by that tick's
phase: uniform in [0, 100) ms, 50 ms on average. All members share one clock.

How the 1,000 blocks are made. The chain cannot produce them quickly: a
header's time is a whole second strictly after its parent's, so a live
federation makes at most one block per second whatever its interval. The
bench therefore builds them itself, signed by 11 of the 15 members' keys, on a
federation whose genesis is far enough in the past, stores them through
``Storage.commit_block`` in one member's database and copies that file to 13
more. Those 14 members replay and verify the blocks at start, then extend the
chain live; the 15th starts empty and catches up from its peers over the real
authenticated transport, verifying every block (11 signatures, full
validation) and committing it durably.

    python -m bench.federation_latency        (or: bench/run federation_latency)
    BENCH_FED_SECONDS=60 BENCH_FED_BLOCKS=1000   to change the amounts
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bench._report import emit
from consensus.chainstate import BlockUndo
from consensus.header import BlockHeader, build_solution, sign_block_hash
from consensus.serialize import ByteReader
from functionary.config import MemberKeys
from functionary.node import open_chain
from functionary.storage import Storage
from tests.federation import ProcessFederation

BENCH = "federation_latency"
N, M = 15, 11
BLOCK_INTERVAL = 1.0
ROUND_TIMEOUT = 5.0
SECONDS = float(os.environ.get("BENCH_FED_SECONDS", "60"))
BLOCKS = int(os.environ.get("BENCH_FED_BLOCKS", "1000"))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _say(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# --- round latency ----------------------------------------------------------------------


def _wait_connected(fed: ProcessFederation, timeout: float) -> None:
    def all_connected() -> bool:
        return all(len(fed.status(i)["peers_connected"]) == fed.n - 1 for i in range(fed.n))  # type: ignore[arg-type]

    fed.wait_for(all_connected, timeout, "every member connected to every other", interval=0.5)


def measure_latency(base: Path) -> None:
    with ProcessFederation(base, N, M, block_interval=BLOCK_INTERVAL, round_timeout=ROUND_TIMEOUT) as fed:
        _say(f"latency: starting {N} members ({M}-of-{N})")
        fed.start_all(timeout=180)
        _wait_connected(fed, 120)
        first = max(fed.height(i) for i in range(N)) + 2  # skip blocks begun before everyone was connected
        last = first + int(SECONDS)
        _say(f"latency: measuring blocks {first}..{last}")
        fed.wait_heights(last + 1, timeout=SECONDS * 3 + 60)
        times: dict[int, int] = {}
        for h in range(first - 1, last + 1):
            header = BlockHeader.read(ByteReader(fed.header(0, fed.block_hash(0, h))))
            times[h] = header.time
        hashes = {h: fed.block_hash(0, h) for h in range(first, last + 1)}
        for i in range(N):
            fed.stop(i)
        problems = fed.check_invariants()
        if problems:
            raise SystemExit("federation invariants failed:\n  " + "\n  ".join(problems))

        commit_ts: dict[int, dict[int, float]] = {i: {} for i in range(N)}
        polka_round: dict[int, int] = {}
        for i in range(N):
            for line in fed.log_lines(i):
                if line.event == "commit":
                    commit_ts[i][line.num("height")] = line.ts
                elif line.event == "sign_lock":
                    h = line.num("height")
                    polka_round[h] = max(polka_round.get(h, 0), line.num("round"))

    per_member: list[float] = []
    per_block_all: list[float] = []
    skipped = 0
    for h in range(first, last + 1):
        proposer = h % N  # round 0
        parent_done = commit_ts[proposer].get(h - 1)
        on_schedule = (
            polka_round.get(h, 1) == 0
            and times[h] == times[h - 1] + int(BLOCK_INTERVAL)
            and parent_done is not None
            and parent_done < times[h]
        )
        commits = [commit_ts[i].get(h) for i in range(N)]
        if not on_schedule or any(c is None for c in commits):
            skipped += 1
            continue
        lat = [c - times[h] for c in commits if c is not None]
        per_member.extend(lat)
        per_block_all.append(max(lat))
    if not per_member:
        raise SystemExit("no block was proposed on schedule; nothing to measure")
    extra = {
        "members": N,
        "threshold": M,
        "blocks": len(per_block_all),
        "blocks_skipped": skipped,
        "block_interval_s": BLOCK_INTERVAL,
        "method": "commit log ts minus header time (= scheduled proposal instant); "
        "overstates by the proposer's 0.1 s tick phase (mean 50 ms)",
        "first_block": first,
        "last_block": last,
        "chain_tip_hash": hashes[last],
    }
    ms = 1000.0
    emit(BENCH, "round_latency_p50", round(percentile(per_member, 50) * ms, 1), "ms", samples=len(per_member), **extra)
    emit(BENCH, "round_latency_p99", round(percentile(per_member, 99) * ms, 1), "ms", samples=len(per_member), **extra)
    emit(BENCH, "round_latency_all_p50", round(percentile(per_block_all, 50) * ms, 1), "ms", **extra)
    emit(BENCH, "round_latency_all_p99", round(percentile(per_block_all, 99) * ms, 1), "ms", **extra)


# --- catch-up ---------------------------------------------------------------------------


def prebuild_chain(fed: ProcessFederation, blocks: int) -> Path:
    """``blocks`` signed blocks on genesis, stored in member 0's database;
    returns the database file (checkpointed, closed)."""
    federation = fed.federation
    params = federation.federation_params()
    keys = [MemberKeys.load(fed.config(i).keys_file) for i in range(fed.n)]
    cfg = fed.config(0)
    storage = Storage.open(cfg.resolved_database_url, federation.chain_id)
    try:
        chain, _ = open_chain(storage, federation, logging.getLogger("bench"))
        now = int(time.time())
        for h in range(1, blocks + 1):
            block = chain.assemble_block([], federation.genesis_time + h)
            signers = sorted((h + k) % fed.n for k in range(fed.m))  # everyone signs some
            signed = block.with_solution(
                build_solution(params, {i: sign_block_hash(keys[i].signing_key, block.hash) for i in signers})
            )
            undo = chain.connect_block(signed, now, check_proof=True)
            assert isinstance(undo, BlockUndo)
            header = signed.header
            storage.commit_block(
                h,
                signed.hash,
                signed.serialize(),
                header.serialize(),
                header.time,
                signers,
                list(signed.txids),
                [(op.txid, op.index) for op, _ in undo.spent],
                [(op.txid, op.index, e.output.serialize(), e.height, e.is_coinbase) for op, e in undo.created],
            )
    finally:
        storage.close()
    path = cfg.data_dir / "chain.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def measure_catchup(base: Path) -> None:
    genesis = int(time.time()) - BLOCKS - 600  # every pre-built block's time is in the past
    with ProcessFederation(
        base, N, M, block_interval=BLOCK_INTERVAL, round_timeout=ROUND_TIMEOUT, genesis_time=genesis
    ) as fed:
        started = time.perf_counter()
        db = prebuild_chain(fed, BLOCKS)
        _say(f"catch-up: built {BLOCKS} blocks in {time.perf_counter() - started:.1f} s")
        behind = N - 1
        for i in range(1, behind):
            shutil.copyfile(db, fed.config(i).data_dir / "chain.sqlite")
        _say(f"catch-up: starting members 0..{behind - 1} on the built chain")
        fed.start_all(range(behind), timeout=300)
        fed.wait_heights(BLOCKS + 2, members=range(behind), timeout=120)

        target = min(fed.height(i) for i in range(behind))
        _say(f"catch-up: member {behind} starts empty, {target} blocks behind")
        spawned = time.time()
        fed.start(behind, wait=False)

        def level() -> bool:
            return fed.height(behind) >= max(fed.height(i) for i in range(behind))

        fed.wait_for(level, 300, f"member {behind} to catch up", interval=0.2)
        equal_after = time.time() - spawned
        requests = fed.events(behind, "catch_up")
        commits = {line.num("height"): line.ts for line in fed.events(behind, "commit")}
        for i in range(N):
            fed.stop(i)
        problems = fed.check_invariants()
        if problems:
            raise SystemExit("federation invariants failed:\n  " + "\n  ".join(problems))

    if not requests or target not in commits:
        raise SystemExit(f"member {behind} did not catch up through requests: {len(requests)} requests")
    seconds = commits[target] - requests[0].ts
    extra = {
        "blocks": target,
        "requests": len(requests),
        "members_serving": behind,
        "threshold": M,
        "database": "sqlite",
        "blocks_source": "pre-built with 11 members' keys (a live chain makes <= 1 block/s)",
    }
    emit(BENCH, "catchup_rate", target / seconds, "blocks/s", seconds=round(seconds, 3), **extra)
    emit(
        BENCH,
        "catchup_rate_from_spawn",
        target / (commits[target] - spawned),
        "blocks/s",
        seconds=round(commits[target] - spawned, 3),
        tip_equal_after_s=round(equal_after, 3),
        **extra,
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmp:
        measure_latency(Path(tmp) / "latency")
        measure_catchup(Path(tmp) / "catchup")
    return 0


if __name__ == "__main__":
    sys.exit(main())
