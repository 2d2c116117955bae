"""End-to-end confidential throughput: pre-built 2-output confidential
transactions submitted with ``POST /tx`` to a 4-of-5 federation of five
member processes on this machine, each counted once final.

    metric                    unit   what
    tx_per_s                  tx/s   N / (first submit sent -> last tx seen final)
    submit_rate               tx/s   N / (first submit sent -> last submit answered)
    latency_p50 / _p99        ms     per tx: its submit sent -> its block seen final
    blocks_used               blocks blocks holding at least one of the N
    tx_per_block_avg / _max   tx     over those blocks
    tx_weight                 WU     one benchmark transaction (all N are this shape)
    liquid_tx_per_s           tx/s   context only: 4,000,000 WU per 60 s block / tx_weight
    member_cpu_ms_per_tx      ms     CPU (user+sys) of all five members in the timed
                                     window, per transaction; 2 cores give 2,000 ms/s.
                                     The floor is 5 members x 2 range proofs x ~2.7 ms
    client_cpu_ms_per_tx      ms     this process (submitting and observing), per tx
    load_average_1m           procs  at the end of the timed window (and before set-up)

Where the time goes, by construction: every member verifies both range
proofs of every transaction once (when the transaction reaches its mempool;
blocks find them in the chain state's and the proof cache), so a member's
CPU per transaction is ~5.4 ms of proofs plus everything else.

The transactions. Each spends one confirmed confidential output (P2WPKH)
to two blinded P2WPKH outputs (52-bit range proofs bound to their
scriptPubKeys, Elements' default, and surjection proofs) and an explicit fee
output: the shape of an ordinary Liquid payment. Every one is independent
(its own input), signed, and built before timing starts.

Set-up, not timed: ``ProcessFederation`` (tests/federation.py) writes a
4-of-5 federation with free coins at genesis (as ``functionary devnet``
does), starts the five members as processes (``python -m functionary run``)
and waits until every member is connected to every other. The genesis coin is
split (explicit) into one coin per fan-out transaction; each fan-out pays
FANOUT blinded outputs; once those are confirmed on every member (the
mempool takes spends of confirmed outputs only), the N payments are built.

Timed: CLIENTS keep-alive connections (a minimal HTTP/1.1 client on asyncio
streams, one request in flight per connection, bodies pre-encoded) take the
payments in order from one queue; connection k talks to member k mod 5, so
submissions are spread evenly over all five members. Each submit must answer
200 with the transaction's txid. Finality is observed, not inferred from the
submit: the bench polls member OBSERVER's tip; for every new block it fetches
the header and the txids, checks that the header carries m valid member
signatures (``solution_signers``) and that the txids hash to its merkle root,
and counts every benchmark transaction in it as final at that poll's time
(polls every POLL_S, so latencies are late by up to that).

After the run every member is stopped and the federation's teardown
invariants are checked (one chain, no fork, no error lines).

    python -m bench.e2e_throughput          (or: bench/run e2e_throughput)

Settings (environment): BENCH_E2E_TXS (1000), BENCH_E2E_CLIENTS (10),
BENCH_E2E_BLOCK_INTERVAL (1 s: a header's time is a whole second after its
parent's, so no federation makes blocks faster; ``functionary devnet``
defaults to 5 s), BENCH_E2E_ROUND_TIMEOUT (5 s), BENCH_E2E_RATE (offered
tx/s, open loop; default: as fast as the members answer), BENCH_E2E_DIR
(keep the members' directories and logs there), BENCH_E2E_PROFILE=DIR
(py-spy samples each member; such a run's figures are not the bench's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from coincurve import PrivateKey

import confidential as ct
from bench._report import emit
from consensus.chainstate import genesis_block
from consensus.hashes import merkle_root
from consensus.header import BlockHeader, solution_signers
from consensus.serialize import ByteReader
from consensus.standard import p2wpkh_script, p2wpkh_script_code, sign_segwit_v0
from consensus.transaction import (
    ConfidentialAsset,
    ConfidentialNonce,
    ConfidentialValue,
    OutPoint,
    Transaction,
    TxIn,
    TxInWitness,
    TxOut,
    TxOutWitness,
)
from functionary.txbuild import Coin as ExplicitCoin
from functionary.txbuild import build_p2wpkh_spend
from tests.federation import ProcessFederation

BENCH = "e2e_throughput"
N, M = 5, 4
N_TX = int(os.environ.get("BENCH_E2E_TXS", "1000"))
CLIENTS = int(os.environ.get("BENCH_E2E_CLIENTS", "10"))
BLOCK_INTERVAL = float(os.environ.get("BENCH_E2E_BLOCK_INTERVAL", "1"))
ROUND_TIMEOUT = float(os.environ.get("BENCH_E2E_ROUND_TIMEOUT", "5"))
TIMEOUT_S = float(os.environ.get("BENCH_E2E_TIMEOUT", "600"))
RATE = float(os.environ.get("BENCH_E2E_RATE", "0"))
"""Offered load in tx/s (open loop); 0 (the default) submits as fast as the
members answer, which measures throughput, and latency at saturation."""
FANOUT = 200
FEE = 300
FREE_COINS = 21_000_000 * 100_000_000 // 1000  # what functionary devnet gives its faucet
OBSERVER = 0
POLL_S = 0.05
LIQUID_BLOCK_WEIGHT = 4_000_000
LIQUID_BLOCK_SECONDS = 60


def _say(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# --- building ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfCoin:
    """A confirmed confidential output we can spend."""

    outpoint: OutPoint
    output: TxOut
    opening: ct.InputOpening
    key: PrivateKey


def _spk(key: PrivateKey) -> bytes:
    return p2wpkh_script(key.public_key.format())


def _blinded_tx(
    inputs: Sequence[tuple[OutPoint, TxOut, ct.InputOpening, PrivateKey]],
    specs: Sequence[ct.OutputSpec],
    rnd: random.Random,
) -> tuple[Transaction, list[ct.Output]]:
    outs = ct.blind_outputs([c[2] for c in inputs], list(specs), rng=rnd.randbytes)
    txouts: list[TxOut] = []
    wits: list[TxOutWitness] = []
    for o in outs:
        if isinstance(o, ct.BlindedOutput):
            txouts.append(
                TxOut(
                    ConfidentialAsset(o.asset_generator),
                    ConfidentialValue(o.value_commitment),
                    ConfidentialNonce(o.nonce_commitment),
                    o.script_pubkey,
                )
            )
            wits.append(TxOutWitness(o.surjection_proof, o.range_proof))
        else:
            txouts.append(TxOut.explicit(o.asset_id, o.value, o.script_pubkey))
            wits.append(TxOutWitness())
    tx = Transaction(2, tuple(TxIn(c[0]) for c in inputs), tuple(txouts), 0, (), tuple(wits))
    sigs = []
    for i, (_, spent, _, key) in enumerate(inputs):
        sig = sign_segwit_v0(key, tx, i, p2wpkh_script_code(spent.script_pubkey[2:]), spent.value)
        sigs.append(TxInWitness(script_witness=(sig, key.public_key.format())))
    return tx.with_witnesses(tuple(sigs)), outs


def build_split(faucet: PrivateKey, genesis_tx: Transaction, asset: bytes, parts: int, each: int) -> Transaction:
    coin = ExplicitCoin(OutPoint(genesis_tx.txid, 0), genesis_tx.outputs[0].value.amount, faucet)
    return build_p2wpkh_spend([coin], [(_spk(faucet), each)] * parts, FEE, asset)


def build_fanouts(
    split: Transaction, faucet: PrivateKey, asset: bytes, count: int, per_coin: int, rnd: random.Random
) -> tuple[list[Transaction], list[ConfCoin]]:
    """``count`` blinded coins of ``per_coin``, FANOUT per fan-out transaction."""
    txs: list[Transaction] = []
    coins: list[ConfCoin] = []
    for j in range(math.ceil(count / FANOUT)):
        k = min(FANOUT, count - j * FANOUT)
        spent = split.outputs[j]
        opening = ct.InputOpening.explicit(asset, spent.value.amount)
        keys = [PrivateKey(rnd.randbytes(32)) for _ in range(k)]
        change = spent.value.amount - k * per_coin - FEE
        specs = [ct.OutputSpec(per_coin, asset, _spk(key), ct.public_key(rnd.randbytes(32))) for key in keys]
        specs.append(ct.OutputSpec(change, asset, _spk(faucet), ct.public_key(rnd.randbytes(32))))
        specs.append(ct.OutputSpec(FEE, asset, b""))
        tx, outs = _blinded_tx([(OutPoint(split.txid, j), spent, opening, faucet)], specs, rnd)
        txs.append(tx)
        for i, key in enumerate(keys):
            coins.append(ConfCoin(OutPoint(tx.txid, i), tx.outputs[i], outs[i].opening(), key))
    return txs, coins


def build_payments(coins: Sequence[ConfCoin], asset: bytes, rnd: random.Random) -> list[Transaction]:
    """One payment per coin: two blinded outputs and the explicit fee."""
    txs = []
    for c in coins:
        value = c.opening.value
        pay = value // 3
        a, b = PrivateKey(rnd.randbytes(32)), PrivateKey(rnd.randbytes(32))
        specs = [
            ct.OutputSpec(pay, asset, _spk(a), ct.public_key(rnd.randbytes(32))),
            ct.OutputSpec(value - pay - FEE, asset, _spk(b), ct.public_key(rnd.randbytes(32))),
            ct.OutputSpec(FEE, asset, b""),
        ]
        txs.append(_blinded_tx([(c.outpoint, c.output, c.opening, c.key)], specs, rnd)[0])
    return txs


# --- set-up through the API (not timed) -------------------------------------------------


def _post(http: httpx.Client, url: str, tx: Transaction) -> None:
    r = http.post(url + "/tx", content=tx.serialize().hex())
    if r.status_code != 200 or r.text.strip() != tx.txid_hex:
        raise SystemExit(f"set-up: POST /tx answered {r.status_code}: {r.text[:300]}")


def _confirmed_everywhere(fed: ProcessFederation, http: httpx.Client, txs: Sequence[Transaction]) -> bool:
    for i in range(fed.n):
        for tx in txs:
            r = http.get(f"{fed.members[i].api}/tx/{tx.txid_hex}/status")
            if r.status_code != 200 or not r.json().get("confirmed"):
                return False
    return True


def fund(fed: ProcessFederation, base: Path, rnd: random.Random) -> tuple[list[Transaction], int]:
    """Confirmed blinded coins on every member; returns the N payments and one's weight."""
    faucet_info = json.loads((base / "faucet.json").read_text())
    faucet = PrivateKey(bytes.fromhex(faucet_info["key"]))
    params = fed.federation.chain_params()
    asset = params.policy_asset
    genesis_tx = genesis_block(params).transactions[0]
    per_coin = 1_000_000
    parts = math.ceil(N_TX / FANOUT)
    each = (FANOUT + 1) * per_coin + 10 * FEE
    split = build_split(faucet, genesis_tx, asset, parts, each)
    t0 = time.perf_counter()
    fanouts, coins = build_fanouts(split, faucet, asset, N_TX, per_coin, rnd)
    payments = build_payments(coins, asset, rnd)
    _say(f"set-up: built {len(fanouts)} fan-outs and {len(payments)} payments in {time.perf_counter() - t0:.1f} s")
    with httpx.Client(timeout=60.0) as http:
        _post(http, fed.members[0].api, split)
        fed.wait_for(lambda: _confirmed_everywhere(fed, http, [split]), 120, "the split on every member", 0.5)
        for k, tx in enumerate(fanouts):
            _post(http, fed.members[k % fed.n].api, tx)
        fed.wait_for(lambda: _confirmed_everywhere(fed, http, fanouts), 300, "the fan-outs on every member", 0.5)
    weights = {tx.weight for tx in payments}
    return payments, max(weights)


# --- the timed part ------------------------------------------------------------------------


class HttpConn:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._r, self._w = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._w is not None:
            self._w.close()
            with contextlib.suppress(OSError):
                await self._w.wait_closed()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        assert self._r is not None and self._w is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: text/plain\r\n"
        self._w.write(head.encode() + b"\r\n" + body)
        status_line = await self._r.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = None
        while True:
            line = await self._r.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "transfer-encoding":
                raise ConnectionError("chunked responses are not expected here")
        if length is None:
            raise ConnectionError("response without Content-Length")
        return status, await self._r.readexactly(length)


def _hostport(url: str) -> tuple[str, int]:
    u = httpx.URL(url)
    assert u.host and u.port
    return u.host, u.port


@dataclass
class Timed:
    first_submit: float
    last_answer: float
    submitted: dict[bytes, float]
    final: dict[bytes, float]
    block_of: dict[bytes, int]
    blocks: dict[int, int]
    rejected: list[str]


async def run_timed(fed: ProcessFederation, payments: Sequence[Transaction]) -> Timed:
    fed_params = fed.federation.federation_params()
    bodies = [(tx.txid, tx.txid_hex, tx.serialize().hex().encode()) for tx in payments]
    ours = {tx.txid for tx in payments}
    submitted: dict[bytes, float] = {}
    final: dict[bytes, float] = {}
    block_of: dict[bytes, int] = {}
    blocks: dict[int, int] = {}
    rejected: list[str] = []
    conns = [HttpConn(*_hostport(fed.members[k % fed.n].api)) for k in range(CLIENTS)]
    for c in conns:
        await c.open()
    obs = HttpConn(*_hostport(fed.members[OBSERVER].api))
    await obs.open()
    _status, body = await obs.request("GET", "/blocks/tip/height")
    seen = int(body)
    queue: asyncio.Queue[tuple[int, bytes, str, bytes]] = asyncio.Queue()
    for k, item in enumerate(bodies):
        queue.put_nowait((k, *item))
    answers: list[float] = []
    done = asyncio.Event()

    async def submitter(conn: HttpConn) -> None:
        while True:
            try:
                k, txid, txid_hex, body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if RATE > 0:  # open loop: transaction k is due at k / RATE
                await asyncio.sleep(max(0.0, first + k / RATE - time.perf_counter()))
            submitted[txid] = time.perf_counter()
            status, answer = await conn.request("POST", "/tx", body)
            answers.append(time.perf_counter())
            if status != 200 or answer.decode().strip() != txid_hex:
                rejected.append(f"{status} {answer[:200]!r}")

    async def observer() -> None:
        nonlocal seen
        while not done.is_set():
            await asyncio.sleep(POLL_S)
            _, body = await obs.request("GET", "/blocks/tip/height")
            tip = int(body)
            now = time.perf_counter()
            for h in range(seen + 1, tip + 1):
                _, bh = await obs.request("GET", f"/block-height/{h}")
                block_hash = bh.decode().strip()
                _, raw_header = await obs.request("GET", f"/block/{block_hash}/header")
                header = BlockHeader.read(ByteReader(bytes.fromhex(raw_header.decode().strip())))
                if header.hash[::-1].hex() != block_hash or header.height != h:
                    raise SystemExit(f"block {h}: the header does not hash to {block_hash}")
                signers = solution_signers(fed_params, header)  # raises unless m valid signatures
                _, txids_json = await obs.request("GET", f"/block/{block_hash}/txids")
                txids = [bytes.fromhex(t)[::-1] for t in json.loads(txids_json)]
                if merkle_root(txids) != header.merkle_root:
                    raise SystemExit(f"block {h}: txids do not match the merkle root")
                assert len(signers) >= fed_params.m
                mine = [t for t in txids if t in ours]
                if mine:
                    blocks[h] = len(mine)
                for t in mine:
                    final[t] = now
                    block_of[t] = h
            seen = max(seen, tip)
            if len(final) == len(ours):
                done.set()

    obs_task = asyncio.create_task(observer())
    first = time.perf_counter()  # read by the submitters
    await asyncio.gather(*(submitter(c) for c in conns))
    last_answer = max(answers)
    try:
        await asyncio.wait_for(asyncio.shield(obs_task), TIMEOUT_S)
    except TimeoutError:
        done.set()
        await obs_task
    for c in [*conns, obs]:
        await c.close()
    return Timed(first, last_answer, submitted, final, block_of, blocks, rejected)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def _cpu_total(pids: Sequence[int]) -> tuple[float, float]:
    times = [_cpu_seconds(p) for p in pids]
    return sum(t[0] for t in times), sum(t[1] for t in times)


def _start_profilers(pids: Sequence[int]) -> list[subprocess.Popen[bytes]]:
    """With BENCH_E2E_PROFILE=DIR, py-spy samples every member through the
    timed part (collapsed stacks in DIR/memberI.txt). It costs CPU itself:
    figures from a profiled run are not the benchmark's."""
    out = os.environ.get("BENCH_E2E_PROFILE")
    if not out:
        return []
    Path(out).mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return [
        subprocess.Popen(
            [
                str(spy),
                "record",
                os.environ.get("BENCH_E2E_PROFILE_MODE", "--gil"),
                "--pid",
                str(pid),
                "--rate",
                "50",
                "--nonblocking",
                "--threads",
                "--format",
                "raw",
                "--output",
                str(Path(out) / f"member{i}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, pid in enumerate(pids)
    ]


def _stop_profilers(spies: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in spies:
        p.send_signal(signal.SIGINT)
    for p in spies:
        p.wait(30)


def main() -> int:
    load_before = _loadavg()
    rnd = random.Random(1)
    keep = os.environ.get("BENCH_E2E_DIR")  # keep the members' logs and databases there
    with contextlib.ExitStack() as stack:
        tmp = keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-e2e-"))
        base = Path(tmp) / "fed"
        with ProcessFederation(
            base, N, M, block_interval=BLOCK_INTERVAL, round_timeout=ROUND_TIMEOUT, free_coins=FREE_COINS
        ) as fed:
            _say(f"starting {N} members ({M}-of-{N}), block interval {BLOCK_INTERVAL:g} s")
            fed.start_all(timeout=120)

            def connected() -> bool:
                return all(len(fed.status(i)["peers_connected"]) == fed.n - 1 for i in range(fed.n))  # type: ignore[arg-type]

            fed.wait_for(connected, 60, "every member connected to every other", interval=0.5)
            payments, weight = fund(fed, base, rnd)
            time.sleep(2 * BLOCK_INTERVAL)  # let the funding blocks' work settle
            pids = [m.proc.pid for m in fed.members if m.proc is not None]
            spies = _start_profilers(pids)
            cpu0 = _cpu_total(pids)
            load_start = _loadavg()
            _say(f"timed: submitting {len(payments)} payments over {CLIENTS} connections; load {load_start}")
            client0 = resource.getrusage(resource.RUSAGE_SELF)
            timed = asyncio.run(run_timed(fed, payments))
            client1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu1 = _cpu_total(pids)
            _stop_profilers(spies)
            load_end = _loadavg()
            for i in range(N):
                fed.stop(i)
            problems = fed.check_invariants()
            if problems:
                raise SystemExit("federation invariants failed:\n  " + "\n  ".join(problems))

    if timed.rejected:
        raise SystemExit(f"{len(timed.rejected)} submits refused, first: {timed.rejected[0]}")
    if len(timed.final) != len(payments):
        _say(f"only {len(timed.final)} of {len(payments)} final within {TIMEOUT_S:g} s")
    if not timed.final:
        raise SystemExit("nothing became final")
    last_final = max(timed.final.values())
    seconds = last_final - timed.first_submit
    lat = [(timed.final[t] - timed.submitted[t]) * 1e3 for t in timed.final]
    per_block = list(timed.blocks.values())
    extra = {
        "txs": len(payments),
        "final": len(timed.final),
        "members": N,
        "threshold": M,
        "cores": os.cpu_count(),
        "block_interval_s": BLOCK_INTERVAL,
        "round_timeout_s": ROUND_TIMEOUT,
        "submit": f"{CLIENTS} keep-alive connections, connection k to member k mod {N}",
        "offered_rate": RATE or "as fast as answered",
        "final_seen_on": f"member {OBSERVER}, polled every {POLL_S} s, m signatures checked",
        "tx_shape": "1 confidential in, 2 blinded out (52-bit range proofs, surjection proofs) + explicit fee",
        "loadavg_before_setup": load_before,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
    }
    emit(BENCH, "tx_per_s", len(timed.final) / seconds, "tx/s", seconds=round(seconds, 3), **extra)
    short = {"txs": len(payments), "loadavg_end": load_end}
    emit(BENCH, "submit_rate", len(payments) / (timed.last_answer - timed.first_submit), "tx/s", **short)
    emit(BENCH, "latency_p50", percentile(lat, 50), "ms", **short)
    emit(BENCH, "latency_p99", percentile(lat, 99), "ms", **short)
    emit(BENCH, "blocks_used", len(per_block), "blocks", heights=f"{min(timed.blocks)}..{max(timed.blocks)}")
    emit(BENCH, "tx_per_block_avg", len(timed.final) / len(per_block), "tx")
    emit(BENCH, "tx_per_block_max", max(per_block), "tx")
    emit(BENCH, "tx_weight", weight, "WU", vbytes=math.ceil(weight / 4))
    emit(
        BENCH,
        "liquid_tx_per_s",
        LIQUID_BLOCK_WEIGHT / LIQUID_BLOCK_SECONDS / weight,
        "tx/s",
        note="context only: Liquid's 4,000,000 WU block every 60 s filled with this tx",
    )
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    emit(
        BENCH,
        "member_cpu_ms_per_tx",
        (user + system) * 1e3 / len(payments),
        "ms",
        user_s=round(user, 2),
        system_s=round(system, 2),
        cores_busy=round((user + system) / seconds, 2),
        floor_ms=round(5 * 2 * 2.7, 1),
        floor="5 members x 2 range proofs x ~2.7 ms (FIELD-NOTES), each verified once per member",
    )
    client_cpu = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
    emit(BENCH, "client_cpu_ms_per_tx", client_cpu * 1e3 / len(payments), "ms", cpu_s=round(client_cpu, 2))
    emit(BENCH, "load_average_1m", float(load_end.split()[0]), "procs", loadavg=load_end)
    return 0


if __name__ == "__main__":
    sys.exit(main())
