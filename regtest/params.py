"""Network parameters, passed explicitly: nothing here is global or mutable.

Values are Bitcoin Core's regtest ``CChainParams`` (src/kernel/chainparams.cpp)
and its policy defaults (src/policy/policy.h), so that a test written against
this stand-in sees the numbers it would see against ``bitcoind -regtest``.

| parameter               | regtest value                                                        |
|-------------------------|----------------------------------------------------------------------|
| genesis hash            | 0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206     |
| proof of work           | bits 0x207fffff, never retargets (about 2 hashes per block)          |
| subsidy                 | 50 BTC, halving every 150 blocks                                     |
| coinbase maturity       | 100 blocks                                                           |
| BIP34/65/66/CSV         | active from height 1; segwit from genesis                            |
| addresses               | bech32 hrp ``bcrt``; base58 P2PKH 0x6f, P2SH 0xc4; WIF 0xef          |
| min relay / incremental | 1000 sat/kvB each; dust relay fee 3000 sat/kvB                       |
| max standard tx weight  | 400000                                                               |
"""

from __future__ import annotations

from dataclasses import dataclass

from .primitives import (
    COIN,
    NULL_HASH,
    Block,
    BlockHeader,
    OutPoint,
    Transaction,
    TxIn,
    TxOut,
    block_merkle_root,
)

_GENESIS_SCRIPT_SIG = bytes.fromhex(
    "04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72"
    "206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73"
)
_GENESIS_OUTPUT_SCRIPT = bytes.fromhex(
    "4104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f3"
    "5504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac"
)


def _genesis(time: int, nonce: int, bits: int, version: int, reward: int) -> Block:
    coinbase = Transaction(
        version=1,
        vin=(TxIn(OutPoint(NULL_HASH, 0xFFFFFFFF), _GENESIS_SCRIPT_SIG, 0xFFFFFFFF),),
        vout=(TxOut(reward, _GENESIS_OUTPUT_SCRIPT),),
        locktime=0,
    )
    root, _ = block_merkle_root([coinbase])
    return Block(BlockHeader(version, NULL_HASH, root, time, bits, nonce), (coinbase,))


@dataclass(frozen=True)
class ChainParams:
    name: str
    genesis: Block
    pow_limit_bits: int
    subsidy_halving_interval: int
    coinbase_maturity: int
    bech32_hrp: str
    p2pkh_prefix: int
    p2sh_prefix: int
    wif_prefix: int
    bip34_height: int
    csv_height: int
    segwit_height: int
    # Policy (src/policy/policy.h, src/validation.h, src/kernel/mempool_options.h).
    min_relay_feerate: int = 1000  # sat/kvB
    incremental_relay_feerate: int = 1000  # sat/kvB
    dust_relay_feerate: int = 3000  # sat/kvB
    max_standard_tx_weight: int = 400_000
    max_block_weight: int = 4_000_000
    max_standard_version: int = 3  # TRUC (v3) is standard from Core 28
    max_op_return_relay: int = 83  # bytes of script, OP_RETURN included
    max_future_block_time: int = 2 * 60 * 60
    default_max_raw_tx_feerate: int = COIN // 10  # sat/kvB: sendrawtransaction's 0.10 BTC/kvB
    max_rbf_evictions: int = 100

    def subsidy(self, height: int) -> int:
        halvings = height // self.subsidy_halving_interval
        if halvings >= 64:
            return 0
        return (50 * COIN) >> halvings


REGTEST_GENESIS = _genesis(time=1296688602, nonce=2, bits=0x207FFFFF, version=1, reward=50 * COIN)

REGTEST = ChainParams(
    name="regtest",
    genesis=REGTEST_GENESIS,
    pow_limit_bits=0x207FFFFF,
    subsidy_halving_interval=150,
    coinbase_maturity=100,
    bech32_hrp="bcrt",
    p2pkh_prefix=0x6F,
    p2sh_prefix=0xC4,
    wif_prefix=0xEF,
    bip34_height=1,
    csv_height=1,
    segwit_height=0,
)

REGTEST_GENESIS_HASH_HEX = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
if REGTEST_GENESIS.hash_hex != REGTEST_GENESIS_HASH_HEX:  # pragma: no cover - a broken build
    raise AssertionError(f"regtest genesis hashes to {REGTEST_GENESIS.hash_hex}")
