"""The node's one wallet: random keys kept in the data directory, coins found in
the UTXO set and the mempool, transactions built, signed and fee-paid.

| address type (getnewaddress) | scriptPubKey               | spent with                            |
|------------------------------|----------------------------|---------------------------------------|
| bech32 (default)             | OP_0 <hash160(pubkey)>     | witness [sig, pubkey], BIP143          |
| p2sh-segwit                  | P2SH of OP_0 <hash160>     | scriptSig <redeem>, witness as above  |
| legacy                       | P2PKH                      | scriptSig <sig> <pubkey>, legacy hash |

Every key is watched in all three forms, so a peg-out paid to the P2PKH or
P2SH-P2WPKH form of a wallet key is seen and spendable whichever address was
handed out. Coins are chosen largest first among confirmed, mature coins and
"trusted" unconfirmed ones (outputs of mempool transactions that spend only
the wallet's coins), as Core's wallet treats its own change. Transactions are
version 2, signal BIP125, and set nLockTime to the tip height (anti fee sniping),
as Core's wallet does.

Not a Core wallet: no HD derivation, no descriptors beyond the three forms,
no encryption, no labels beyond a string per key, one wallet per node.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from coincurve import PrivateKey

from .address import p2pkh_script, p2sh_script, p2wpkh_script, script_to_address
from .chain import MEMPOOL_HEIGHT, Chain, Coin
from .mempool import Mempool, dust_threshold
from .params import ChainParams
from .primitives import OutPoint, Transaction, TxIn, TxOut, hash160
from .script import (
    SIGHASH_ALL,
    PrecomputedTxData,
    legacy_sighash,
    push_data,
    segwit_v0_sighash,
    with_checksum,
)
from .store import Store, StoredKey

ADDRESS_TYPES = ("legacy", "p2sh-segwit", "bech32")
# Virtual sizes of one input spending each form, with a 72-byte signature.
_INPUT_VSIZE = {"bech32": 68, "p2sh-segwit": 91, "legacy": 148}
_TX_OVERHEAD_VSIZE = 11  # version, locktime, counts, segwit marker (rounded up)


class WalletError(Exception):
    """A wallet request refused; ``code`` is Core's RPC code for it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Owned:
    key: StoredKey
    form: str  # one of ADDRESS_TYPES


@dataclass(frozen=True)
class WalletCoin:
    outpoint: OutPoint
    coin: Coin
    owned: Owned
    confirmations: int
    trusted: bool


def _redeem(pubkey: bytes) -> bytes:
    return p2wpkh_script(pubkey)


def scripts_for(pubkey: bytes) -> dict[str, bytes]:
    h = hash160(pubkey)
    return {
        "bech32": p2wpkh_script(pubkey),
        "p2sh-segwit": p2sh_script(hash160(_redeem(pubkey))),
        "legacy": p2pkh_script(h),
    }


class Wallet:
    def __init__(self, store: Store, params: ChainParams) -> None:
        self.store = store
        self.params = params
        self.keys: list[StoredKey] = []
        self.scripts: dict[bytes, Owned] = {}
        for key in store.wallet_keys():
            self._watch(key)

    def _watch(self, key: StoredKey) -> None:
        self.keys.append(key)
        for form, script in scripts_for(key.pubkey).items():
            self.scripts[script] = Owned(key, form)

    def new_key(self, address_type: str, label: str = "", change: bool = False) -> tuple[StoredKey, str]:
        while True:
            secret = secrets.token_bytes(32)
            try:
                priv = PrivateKey(secret)
                break
            except ValueError:  # zero or above the group order: astronomically rare
                continue
        key = StoredKey(secret, priv.public_key.format(compressed=True), label, change, address_type)
        self.store.add_key(key)
        self._watch(key)
        address = script_to_address(scripts_for(key.pubkey)[address_type], self.params)
        assert address is not None
        return key, address

    def owned(self, script: bytes) -> Owned | None:
        return self.scripts.get(script)

    def descriptor(self, owned: Owned) -> str:
        pub = owned.key.pubkey.hex()
        inner = {"bech32": f"wpkh({pub})", "p2sh-segwit": f"sh(wpkh({pub}))", "legacy": f"pkh({pub})"}[owned.form]
        return with_checksum(inner)

    # --- coins -------------------------------------------------------------------------------

    def coins(self, chain: Chain, mempool: Mempool) -> list[WalletCoin]:
        """Every unspent wallet coin (chain and mempool), spent-in-mempool excluded."""
        out: list[WalletCoin] = []
        maturity = self.params.coinbase_maturity
        for op, coin in chain.utxo.items():
            owned = self.scripts.get(coin.out.script_pubkey)
            if owned is None or op in mempool.spenders:
                continue
            confirmations = chain.height - coin.height + 1
            # Core's wallet waits one block more than consensus (GetBlocksToMaturity).
            if coin.coinbase and confirmations < maturity + 1:
                continue
            out.append(WalletCoin(op, coin, owned, confirmations, True))
        trusted = self._trusted_mempool(chain, mempool)
        for txid, entry in mempool.entries.items():
            for n, txout in enumerate(entry.tx.vout):
                owned = self.scripts.get(txout.script_pubkey)
                op = OutPoint(txid, n)
                if owned is None or op in mempool.spenders:
                    continue
                out.append(WalletCoin(op, Coin(txout, MEMPOOL_HEIGHT, False), owned, 0, txid in trusted))
        return out

    def immature_balance(self, chain: Chain) -> int:
        total = 0
        for coin in chain.utxo.values():
            mine = coin.coinbase and coin.out.script_pubkey in self.scripts
            if mine and chain.height - coin.height + 1 < self.params.coinbase_maturity + 1:
                total += coin.out.value
        return total

    def _trusted_mempool(self, chain: Chain, mempool: Mempool) -> set[bytes]:
        trusted: set[bytes] = set()
        for entry in mempool.ordered():
            ok = True
            for txin in entry.tx.vin:
                parent = mempool.entries.get(txin.prevout.txid)
                if parent is not None:
                    ok = ok and txin.prevout.txid in trusted
                    script = parent.tx.vout[txin.prevout.n].script_pubkey
                else:
                    coin = chain.utxo.get(txin.prevout)
                    script = coin.out.script_pubkey if coin else b""
                ok = ok and script in self.scripts
            if ok:
                trusted.add(entry.tx.txid)
        return trusted

    # --- building and signing -------------------------------------------------------------------

    def sign(self, tx: Transaction, spent: list[tuple[Coin, Owned]]) -> Transaction:
        cache = PrecomputedTxData(tx)
        vin: list[TxIn] = []
        for i, (txin, (coin, owned)) in enumerate(zip(tx.vin, spent, strict=True)):
            priv = PrivateKey(owned.key.privkey)
            pub = owned.key.pubkey
            if owned.form == "legacy":
                digest = legacy_sighash(tx, i, coin.out.script_pubkey, SIGHASH_ALL)
                sig = priv.sign(digest, hasher=None) + bytes((SIGHASH_ALL,))
                vin.append(TxIn(txin.prevout, push_data(sig) + push_data(pub), txin.sequence))
                continue
            script_code = p2pkh_script(hash160(pub))
            digest = segwit_v0_sighash(tx, i, script_code, coin.out.value, SIGHASH_ALL, cache)
            sig = priv.sign(digest, hasher=None) + bytes((SIGHASH_ALL,))
            script_sig = push_data(_redeem(pub)) if owned.form == "p2sh-segwit" else b""
            vin.append(TxIn(txin.prevout, script_sig, txin.sequence, (sig, pub)))
        return Transaction(tx.version, tuple(vin), tx.vout, tx.locktime)

    def create_transaction(
        self,
        chain: Chain,
        mempool: Mempool,
        outputs: list[TxOut],
        feerate: int,
        subtract_fee_from: set[int],
        replaceable: bool = True,
    ) -> tuple[Transaction, int]:
        """Fund, sign and return (tx, fee) paying ``outputs`` at ``feerate`` sat/kvB.
        Raises WalletError(-6, ...) as Core's CreateTransaction does."""
        dust = self.params.dust_relay_feerate
        for out in outputs:
            if out.value <= 0:
                raise WalletError(-3, "Invalid amount for send")
        target = sum(o.value for o in outputs)
        candidates = [c for c in self.coins(chain, mempool) if c.confirmations > 0 or c.trusted]
        candidates.sort(key=lambda c: (-c.coin.out.value, c.outpoint.txid, c.outpoint.n))
        change_script_len = 22  # P2WPKH change
        out_vsize = sum(9 + len(o.script_pubkey) + (2 if len(o.script_pubkey) >= 0xFD else 0) for o in outputs)
        chosen: list[WalletCoin] = []
        total_in = 0
        for coin in candidates:
            chosen.append(coin)
            total_in += coin.coin.out.value
            vsize = _TX_OVERHEAD_VSIZE + out_vsize + sum(_INPUT_VSIZE[c.owned.form] for c in chosen)
            fee_no_change = math.ceil(feerate * vsize / 1000)
            need = target if subtract_fee_from else target + fee_no_change
            if total_in >= need:
                break
        else:
            raise WalletError(-6, "Insufficient funds")

        vsize = _TX_OVERHEAD_VSIZE + out_vsize + sum(_INPUT_VSIZE[c.owned.form] for c in chosen)
        fee = math.ceil(feerate * vsize / 1000)
        fee_with_change = math.ceil(feerate * (vsize + 9 + change_script_len) / 1000)
        change_dust = dust_threshold(b"\x00\x14" + b"\x00" * 20, dust)
        final_outputs = list(outputs)
        if subtract_fee_from:
            # The recipients pay the fee, shared out, the first of them taking the remainder.
            excess = total_in - target
            if excess >= change_dust:
                change, deduct = excess, fee_with_change
            else:
                change, deduct = 0, max(0, fee - excess)
            idxs = sorted(subtract_fee_from)
            share, rem = divmod(deduct, len(idxs))
            for k, i in enumerate(idxs):
                o = final_outputs[i]
                final_outputs[i] = TxOut(o.value - share - (rem if k == 0 else 0), o.script_pubkey)
        else:
            change = total_in - target - fee_with_change
            if change < change_dust:
                change = 0  # too small to be worth an output: it goes to the fee
        for o in final_outputs:
            if o.value < dust_threshold(o.script_pubkey, dust):
                if subtract_fee_from:
                    raise WalletError(-6, "The transaction amount is too small to pay the fee")
                raise WalletError(-6, "Transaction amount too small")
        if change > 0:
            change_key, _ = self.new_key("bech32", change=True)
            change_script = scripts_for(change_key.pubkey)["bech32"]
            # Core puts change at a random position; so do we.
            pos = secrets.randbelow(len(final_outputs) + 1)
            final_outputs.insert(pos, TxOut(change, change_script))
        sequence = 0xFFFFFFFD if replaceable else 0xFFFFFFFE
        unsigned = Transaction(
            2,
            tuple(TxIn(c.outpoint, b"", sequence) for c in chosen),
            tuple(final_outputs),
            chain.height,
        )
        signed = self.sign(unsigned, [(c.coin, c.owned) for c in chosen])
        return signed, total_in - sum(o.value for o in final_outputs)
