"""The watchmen: paying peg-outs on the mainchain, keeping federation coins
out of the emergency keys' reach, and the reserves' invariants.

Pure, except that it leaves every RPC and every write to the node:

    module       for
    ledger       federation coins, peg-outs and payouts, folded from sidechain blocks
                 and mainchain confirmations; serializable; reserves and audit
    payout       fee rate, building a payout, check_payout (each watchman), the
                 leader's plan (new payout, fee-bump replacement, sweep)
    signing      per-input signatures with tweaked keys, combining m of them, the
                 signer's durable no-two-live-disjoint-payouts rule
    emergency    coins due for a sweep, the emergency keys' CSV spend
    messages     wire forms of proposal, signatures, refusal, complete payout
    txmath       BIP143, weights, vsizes, fees

Storage keys in the ``peg_state`` table:

    key                 value                                 written
    watchmen/ledger     Ledger.serialize()                    with each block (commit_block's
                                                              peg_updates); after each
                                                              record/confirm (peg_put)
    watchmen/signer     SignerState.serialize()               peg_put, BEFORE signatures leave
"""

from __future__ import annotations

LEDGER_KEY = b"watchmen/ledger"
SIGNER_STATE_KEY = b"watchmen/signer"

__all__ = ["LEDGER_KEY", "SIGNER_STATE_KEY"]
