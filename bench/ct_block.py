"""Verifying a block of confidential transactions: ChainState.check_block on one core and on all.

The block holds N_TX transactions of bench/ct_validate's shape: each spends
2 confidential coins to 2 confidential outputs (52-bit range proofs bound to
their scriptPubKeys, surjection proofs over both inputs) and an explicit fee.
The coins come from block 1, which blinds the genesis coins into 2*N_TX of
them. Everything is built before any timing starts.

``check_block`` runs every rule of a signed block: header and 2-of-3
federation signatures, merkle and witness commitments, each transaction's
rules, tally and 2 input signatures, and then the block's proofs in one
batch (consensus.ct).

Figures (JSON lines through bench/_report.emit):

    block_ms_one_core         ConfidentialTxVerifier(max_workers=1, cache=False)
    block_ms_all_cores        the same with max_workers = the cores available
    block_speedup             one core / all cores, whole block
    block_tx_per_s_all_cores  transactions per second at that rate
    proof_batch_share         the proof batch's part of the one-core time
    block_ms_after_mempool    all cores, default cache, every transaction first
                              through validate_transaction (as a mempool would):
                              the proofs come from the cache

Each time is the best of ROUNDS runs, since other work shares the machine.

    python -m bench.ct_block            (or: bench/run ct_block)
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence

from coincurve import PrivateKey

import confidential as ct
from bench._report import emit
from confidential.verify import default_workers
from consensus.block import Block
from consensus.chainstate import COIN, ChainState
from consensus.ct import ConfidentialTxVerifier, ProofCheck
from consensus.header import sign_block_hash
from consensus.params import ChainParams, FederationParams
from consensus.script import push_data
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

BENCH = "ct_block"
N_TX = 48
ROUNDS = 5
FEE = 1_000
ASSET = bytes.fromhex("6d521c38ec1ea15734ae22b7c46064412829c0d0579f0a713d1c04ede979026f")
SIGNERS = [PrivateKey(bytes([0x01 + i]) * 32) for i in range(3)]
FED = FederationParams(tuple(k.public_key.format() for k in SIGNERS), 2)
ALICE = PrivateKey(b"\x0a" * 32)
T0 = 1_700_000_000
Coin = tuple[OutPoint, TxOut, ct.InputOpening, PrivateKey]


def _spk(key: PrivateKey) -> bytes:
    return p2wpkh_script(key.public_key.format())


def _tx(coins: Sequence[Coin], specs: list[ct.OutputSpec], rnd: random.Random) -> tuple[Transaction, list[ct.Output]]:
    outs = ct.blind_outputs([c[2] for c in coins], specs, rng=rnd.randbytes)
    txouts, wits = [], []
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
    tx = Transaction(2, tuple(TxIn(c[0]) for c in coins), tuple(txouts), 0, (), tuple(wits))
    sigs = []
    for i, (_, spent, _, key) in enumerate(coins):
        sig = sign_segwit_v0(key, tx, i, p2wpkh_script_code(spent.script_pubkey[2:]), spent.value)
        sigs.append(TxInWitness(script_witness=(sig, key.public_key.format())))
    return tx.with_witnesses(tuple(sigs)), outs


def _sign(chain: ChainState, txs: Sequence[Transaction], time_: int) -> Block:
    candidate = chain.assemble_block(list(txs), time_)
    sigs = [sign_block_hash(SIGNERS[i], candidate.hash) for i in (0, 1)]
    return candidate.with_solution(b"\x00" + b"".join(push_data(s) for s in sigs))


def build() -> tuple[ChainParams, Block, Block]:
    """Block 1 (genesis coins into 2*N_TX confidential coins) and block 2 (N_TX payments)."""
    rnd = random.Random(1)
    free = 2 * N_TX * 10 * COIN + FEE
    params = ChainParams(
        FED, policy_asset=ASSET, initial_free_coins=free, initial_free_coins_script=_spk(ALICE), genesis_time=T0
    )
    chain = ChainState(params)
    genesis = chain.genesis.transactions[0]
    alice: Coin = (OutPoint(genesis.txid, 0), genesis.outputs[0], ct.InputOpening.explicit(ASSET, free), ALICE)
    keys = [PrivateKey(rnd.randbytes(32)) for _ in range(2 * N_TX)]
    specs = [ct.OutputSpec(10 * COIN, ASSET, _spk(k), ct.public_key(rnd.randbytes(32))) for k in keys]
    tx1, outs = _tx([alice], [*specs, ct.OutputSpec(FEE, ASSET, b"")], rnd)
    block1 = _sign(chain, [tx1], T0 + 60)
    chain.connect_block(block1, T0 + 60)
    coins: list[Coin] = [(OutPoint(tx1.txid, k), tx1.outputs[k], outs[k].opening(), keys[k]) for k in range(2 * N_TX)]
    txs = []
    for j in range(N_TX):
        pair = coins[2 * j : 2 * j + 2]
        specs2 = [
            ct.OutputSpec(12 * COIN, ASSET, _spk(keys[0]), ct.public_key(rnd.randbytes(32))),
            ct.OutputSpec(8 * COIN - FEE, ASSET, _spk(keys[1]), ct.public_key(rnd.randbytes(32))),
            ct.OutputSpec(FEE, ASSET, b""),
        ]
        txs.append(_tx(pair, specs2, rnd)[0])
    return params, block1, _sign(chain, txs, T0 + 120)


def _chain(params: ChainParams, block1: Block, verifier: ConfidentialTxVerifier) -> ChainState:
    chain = ChainState(params, confidential_verifier=verifier)
    chain.connect_block(block1, T0 + 60)
    return chain


def best_ms(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


class _Timed(ConfidentialTxVerifier):
    """Times the proof batch inside a block check: the best of the runs since ``best_ms`` was reset."""

    best_ms = float("inf")

    def verify_proofs(self, checks: Sequence[ProofCheck]) -> None:
        start = time.perf_counter()
        super().verify_proofs(checks)
        self.best_ms = min(self.best_ms, (time.perf_counter() - start) * 1e3)


def main() -> None:
    cores = default_workers()
    t0 = time.perf_counter()
    params, block1, block2 = build()
    build_s = time.perf_counter() - t0
    now = block2.header.time

    one = _Timed(ASSET, max_workers=1, cache=False)
    all_ = ConfidentialTxVerifier(ASSET, max_workers=cores, cache=False)
    chain_one, chain_all = _chain(params, block1, one), _chain(params, block1, all_)
    chain_cached = _chain(params, block1, ConfidentialTxVerifier(ASSET, max_workers=cores))
    for tx in block2.transactions[1:]:
        chain_cached.validate_transaction(tx)  # the mempool's pass fills the cache

    one.best_ms = float("inf")  # not block 1's batch
    one_ms = best_ms(lambda: chain_one.check_block(block2, now))
    batch_ms = one.best_ms
    all_ms = best_ms(lambda: chain_all.check_block(block2, now))
    cached_ms = best_ms(lambda: chain_cached.check_block(block2, now))

    shape = {"txs": N_TX, "per_tx": "2 confidential in, 2 confidential out + explicit fee", "range_bits": 52}
    emit(BENCH, "build_s", build_s, "s", note="blinding and signing, outside every timed region")
    emit(BENCH, "block_bytes", block2.size, "B", **shape)
    emit(BENCH, "block_ms_one_core", one_ms, "ms", cores=1, **shape)
    emit(BENCH, "block_ms_all_cores", all_ms, "ms", cores=cores, **shape)
    emit(BENCH, "block_speedup", one_ms / all_ms, "x", cores=cores, what="one core / all cores, whole check_block")
    emit(BENCH, "block_tx_per_s_all_cores", N_TX / (all_ms / 1e3), "tx/s", cores=cores)
    emit(BENCH, "proof_batch_share", batch_ms / one_ms, "fraction", cores=1, batch_ms=round(batch_ms, 3))
    emit(BENCH, "block_ms_after_mempool", cached_ms, "ms", cores=cores, note="proofs verified before, from the cache")
    emit(BENCH, "load_average_1m", os.getloadavg()[0], "procs", note="other work on the machine during the run")


if __name__ == "__main__":
    main()
