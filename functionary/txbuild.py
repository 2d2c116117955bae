"""Building and signing simple explicit transactions: P2WPKH coins paid to
P2WPKH scripts with an explicit fee output. Used by the devnet faucet, tests
and benchmarks; the user wallet builds on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coincurve import PrivateKey

from consensus.standard import SIGHASH_ALL, p2wpkh_script, p2wpkh_script_code, sign_segwit_v0
from consensus.transaction import ConfidentialValue, OutPoint, Transaction, TxIn, TxInWitness, TxOut


@dataclass(frozen=True)
class Coin:
    """A spendable explicit output and the key that owns it."""

    outpoint: OutPoint
    value: int
    key: PrivateKey

    @property
    def script_pubkey(self) -> bytes:
        return p2wpkh_script(self.key.public_key.format())


def p2wpkh_for(key: PrivateKey) -> bytes:
    return p2wpkh_script(key.public_key.format())


def build_p2wpkh_spend(
    coins: Sequence[Coin],
    payments: Sequence[tuple[bytes, int]],
    fee: int,
    asset: bytes,
    *,
    change_script: bytes | None = None,
) -> Transaction:
    """Spend ``coins`` to ``payments`` (script, amount), paying ``fee``
    explicitly; anything left goes to ``change_script`` (default: the first
    coin's script)."""
    total_in = sum(c.value for c in coins)
    total_out = sum(a for _, a in payments) + fee
    if total_out > total_in:
        raise ValueError(f"spending {total_out} from coins worth {total_in}")
    outputs = [TxOut.explicit(asset, amount, script) for script, amount in payments]
    change = total_in - total_out
    if change:
        outputs.append(TxOut.explicit(asset, change, change_script or coins[0].script_pubkey))
    outputs.append(TxOut.explicit(asset, fee, b""))
    unsigned = Transaction(2, tuple(TxIn(c.outpoint) for c in coins), tuple(outputs))
    witnesses = []
    for i, coin in enumerate(coins):
        pubkey = coin.key.public_key.format()
        code = p2wpkh_script_code(coin.script_pubkey[2:])
        sig = sign_segwit_v0(coin.key, unsigned, i, code, ConfidentialValue.explicit(coin.value), SIGHASH_ALL)
        witnesses.append(TxInWitness(script_witness=(sig, pubkey)))
    return unsigned.with_witnesses(tuple(witnesses))
