"""``functionary audit``'s speed: headers verified per second, beside the
cost of one ECDSA verification measured in the same run.

A chain of ``BENCH_AUDIT_BLOCKS`` signed blocks is built in this process
with the consensus code, for a 4-of-5 federation and for Liquid's 11-of-15.
Block h is signed by members ``(h + k) mod n`` for k < m, so the signer sets
rotate as on a live federation. Then, one core:

    metric                               unit        what
    ecdsa_verify_us                      us          one coincurve verify, key parsed
    header_verify_rate_M_of_N            headers/s   the audit's header check: parse
                                                     the header bytes, hash them,
                                                     solution_signers (strict DER,
                                                     low S, CHECKMULTISIG's walk)
    header_verify_cost_in_verifies_M_of_N ratio      (1 / rate) / ecdsa verify time
    verify_calls_per_header_M_of_N       verifies    signature checks the walk made,
                                                     counted: m, plus one for each
                                                     non-signer's key tried before a
                                                     signer's (n - m at most)
    header_verify_rate_first_m_M_of_N    headers/s   the same with the first m members
                                                     signing every block (the walk's
                                                     best case: exactly m verifies)
    audit_rate_M_of_N                    blocks/s    audit_chain end to end in process
                                                     (served from memory, no HTTP):
                                                     header and block parsing, hashes,
                                                     links, signatures, merkle root,
                                                     replay into a fresh chain state
    audit_http_rate_4_of_5               blocks/s    ``functionary audit`` as the command
                                                     runs it (FETCH_WORKERS connections
                                                     fetching ahead) against a real member
                                                     process serving the chain over its API
    audit_http_rate_one_connection_4_of_5 blocks/s   the same, one request at a time

The walk tries keys in order and a signature only verifies under its own key,
so every non-signer whose key comes before the last signer's costs one
failed verification: Elements' CHECKMULTISIG does the same. With rotating
signer sets that is the difference between verify_calls_per_header and m.

    python -m bench.audit_speed        (or: bench/run audit_speed)
    BENCH_AUDIT_BLOCKS=2000
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from coincurve import PrivateKey, PublicKey

from bench._report import emit, per_second
from consensus.block import Block
from consensus.hashes import sha256d
from consensus.header import BlockHeader, build_solution, sign_block_hash, solution_signers
from consensus.params import FederationParams
from consensus.standard import p2wpkh_script
from functionary.audit import audit_chain
from functionary.config import Federation, MemberInfo

BENCH = "audit_speed"
BLOCKS = int(os.environ.get("BENCH_AUDIT_BLOCKS", "2000"))
SHAPES = ((4, 5), (11, 15))
T0 = 1_700_000_000


def federation(n: int, m: int) -> tuple[Federation, list[PrivateKey]]:
    keys = [PrivateKey((0x1000 + i).to_bytes(32, "big")) for i in range(n)]
    members = tuple(
        MemberInfo(i, f"m{i}", k.public_key.format(), bytes([i]) * 32, ("127.0.0.1", 7100 + i), "")
        for i, k in enumerate(keys)
    )
    faucet = PrivateKey(b"\x0f" * 32).public_key.format()
    return Federation(members, m, T0, 1.0, 1.0, 0, p2wpkh_script(faucet)), keys


def build_chain(fed: Federation, keys: Sequence[PrivateKey], blocks: int, rotate: bool) -> list[Block]:
    from functionary.node import make_chain

    params = fed.federation_params()
    chain, _ = make_chain(fed, None)
    out = [chain.genesis]
    n, m = fed.n, fed.threshold
    for h in range(1, blocks + 1):
        block = chain.assemble_block([], T0 + h)
        signers = sorted((h + k) % n for k in range(m)) if rotate else list(range(m))
        signed = block.with_solution(build_solution(params, {i: sign_block_hash(keys[i], block.hash) for i in signers}))
        chain.connect_block(signed, T0 + h, check_proof=True)
        out.append(signed)
    return out


class CountingKey:
    """A PublicKey stand-in that counts verify calls."""

    calls = 0

    def __init__(self, key: PublicKey) -> None:
        self.key = key

    def verify(self, sig: bytes, msg: bytes, hasher: object = None) -> bool:
        CountingKey.calls += 1
        ok: bool = self.key.verify(sig, msg, hasher=None)
        return ok


def header_rate(params: FederationParams, raw_headers: list[bytes], seconds: float = 2.0) -> float:
    """Headers per second: parse, hash, solution_signers, over the chain in turn."""
    i = 0

    def one() -> None:
        nonlocal i
        header = BlockHeader.parse(raw_headers[i])
        solution_signers(params, header)
        i = (i + 1) % len(raw_headers)

    return per_second(one, seconds)


def verify_calls_per_header(params: FederationParams, raw_headers: list[bytes]) -> float:
    counted = FederationParams(params.signing_keys, params.m)
    counted.__dict__["pubkeys"] = tuple(CountingKey(k) for k in params.pubkeys)  # the cached_property's slot
    CountingKey.calls = 0
    for raw in raw_headers:
        solution_signers(counted, BlockHeader.parse(raw))
    return CountingKey.calls / len(raw_headers)


class ListFetcher:
    def __init__(self, blocks: Sequence[Block]) -> None:
        self.blocks = list(blocks)
        self.raw = {b.hash: (b.header.serialize(), b.serialize()) for b in blocks}

    def tip_height(self) -> int:
        return len(self.blocks) - 1

    def block_hash(self, height: int) -> bytes:
        return self.blocks[height].hash

    def header(self, block_hash: bytes) -> bytes:
        return self.raw[block_hash][0]

    def block(self, block_hash: bytes) -> bytes:
        return self.raw[block_hash][1]


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> int:
    key = PrivateKey(b"\x42" * 32)
    msg = sha256d(b"audit")
    sig = key.sign(msg, hasher=None)
    pub = PublicKey(key.public_key.format())
    verify_rate = per_second(lambda: pub.verify(sig, msg, hasher=None), 2.0)
    verify_us = 1e6 / verify_rate
    emit(BENCH, "ecdsa_verify_us", verify_us, "us", verifies_per_s=round(verify_rate), loadavg=_loadavg())
    for m, n in SHAPES:
        fed, keys = federation(n, m)
        params = fed.federation_params()
        tag = f"{m}_of_{n}"
        for rotate in (True, False):
            started = time.perf_counter()
            chain = build_chain(fed, keys, BLOCKS, rotate)
            built = time.perf_counter() - started
            raw = [b.header.serialize() for b in chain[1:]]
            rate = header_rate(params, raw)
            calls = verify_calls_per_header(params, raw)
            extra = {"blocks": BLOCKS, "members": n, "threshold": m, "verify_us": round(verify_us, 2)}
            if not rotate:
                emit(BENCH, f"header_verify_rate_first_m_{tag}", rate, "headers/s",
                     verify_calls_per_header=round(calls, 3),
                     cost_in_verifies=round(verify_rate / rate, 3), **extra)  # fmt: skip
                continue
            emit(BENCH, f"header_verify_rate_{tag}", rate, "headers/s", signers="rotating", **extra)
            emit(BENCH, f"header_verify_cost_in_verifies_{tag}", verify_rate / rate, "verifies", **extra)
            emit(BENCH, f"verify_calls_per_header_{tag}", calls, "verifies", **extra)
            report = audit_chain(ListFetcher(chain), fed)
            if not report.ok or report.blocks_checked != BLOCKS + 1:
                raise SystemExit(f"the audit failed on an honest chain: {report.summary()}")
            emit(BENCH, f"audit_rate_{tag}", report.blocks_checked / report.seconds, "blocks/s",
                 seconds=round(report.seconds, 3), signatures=report.signatures_checked,
                 chain_build_s=round(built, 2), **extra)  # fmt: skip
    audit_over_http()
    return 0


def audit_over_http() -> None:
    """The chain in a real member's database (4-of-5, only that member
    running: it serves, it makes no blocks), audited through its API."""
    import tempfile
    from pathlib import Path

    from bench.federation_latency import prebuild_chain
    from functionary.audit import FETCH_WORKERS, HttpFetcher, PrefetchingFetcher
    from tests.federation import ProcessFederation

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        genesis = int(time.time()) - BLOCKS - 600
        with ProcessFederation(Path(tmp), 5, 4, genesis_time=genesis) as pf:
            prebuild_chain(pf, BLOCKS)
            pf.start(0, timeout=120)
            url = pf.members[0].api
            command = PrefetchingFetcher(lambda: HttpFetcher(url), workers=FETCH_WORKERS)
            for metric, fetch in (("audit_http_rate_one_connection", HttpFetcher(url)), ("audit_http_rate", command)):
                try:
                    report = audit_chain(fetch, pf.federation)
                finally:
                    fetch.close()
                if not report.ok or report.blocks_checked < BLOCKS + 1:
                    raise SystemExit(f"the audit failed on an honest chain: {report.summary()}")
                emit(BENCH, f"{metric}_4_of_5", report.blocks_checked / report.seconds, "blocks/s",
                     seconds=round(report.seconds, 3), blocks=report.blocks_checked, requests_per_block=3,
                     fetcher=type(fetch).__name__, loadavg=_loadavg())  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
