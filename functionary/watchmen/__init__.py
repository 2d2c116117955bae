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

    key                 value                         written
    watchmen/ledger     Ledger.serialize()            with each block (commit_block's
                                                      peg_updates); after each mainchain
                                                      event (peg_put)
    watchmen/signer     SignerState.serialize()       peg_put, BEFORE signatures leave

What the node calls, and when:

    when                                    call
    start                                   Ledger.parse(peg_get(LEDGER_KEY), params) or
                                            Ledger(params); Watchman(index, key, params,
                                            SignerState.parse(peg_get(SIGNER_STATE_KEY)))
    every committed sidechain block h       events = extract_block_events(block.transactions,
    (every one, so peg-out depth advances)  peg); heights = {b: its bitcoind height for b in
                                            events.mainchain_blocks}; new = ledger.clone();
                                            new.apply_block(h, events, heights); commit_block(...,
                                            peg_updates={LEDGER_KEY: new.serialize()}); and check
                                            new.audit() == [] and new.reserves().sidechain_supply
                                            against the chain's supply (log loudly if not)
    h is a payout round (payout_due) and    rate = feerate_from_estimate(estimatesmartfee(
    this member proposed block h            params.conf_target)); plan = plan_payout(ledger,
                                            params, mainchain_height=tip, rate=rate,
                                            mined=<live txids in a block>, must_conflict=<txs
                                            from refusals>); broadcast PayoutProposal(plan.tx)
    PayoutProposal received                 check, effects = watchman.on_proposal(ledger, tx,
                                            tip): peg_put(SIGNER_STATE_KEY, ...) durably, THEN
                                            send PayoutSignatures; on PayoutError or
                                            ConflictsWithSignedPayout send PayoutRefused (code =
                                            the class name, earlier = err.earlier)
    leader: signatures received             combine(tx, coins_of(ledger, tx), peg, sigs) once m
                                            verify; sendrawtransaction; broadcast PayoutComplete
    PayoutComplete seen, or a federation    ledger.record_payout(tx, tip); peg_put(LEDGER_KEY)
    coin's spender seen in the mempool
    each mainchain block                    for each live payout: depth (getrawtransaction
                                            verbose, or gettxout on an output); at confirm_depth
                                            ledger.confirm_payout(tx, block height), in chain
                                            order; a federation coin gone from gettxout that no
                                            payout spends: spent_elsewhere (an alarm)
"""

from __future__ import annotations

LEDGER_KEY = b"watchmen/ledger"
SIGNER_STATE_KEY = b"watchmen/signer"

__all__ = ["LEDGER_KEY", "SIGNER_STATE_KEY"]
