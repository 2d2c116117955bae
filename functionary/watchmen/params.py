"""The watchmen's policy: how often, how much fee, how deep, how big.

None of this is consensus; every watchman must use the same values, or
their ``check_payout`` answers differ and payouts stall (never double-pay:
that rests on the signer's rule, not on agreement). The node builds them
from the federation's configuration.

    field                 default   meaning
    payout_interval (K)   10        the block proposer of every K-th sidechain height
                                    leads a payout round
    min_feerate           1         sat/vB; the floor (Core's minimum relay fee)
    max_feerate           500       sat/vB; no payout pays more
    fallback_feerate      None      sat/vB when estimatesmartfee has no estimate
                                    (None: min_feerate)
    conf_target           6         estimatesmartfee's target, blocks
    bump_after (N)        6         mainchain blocks a broadcast payout may stay
                                    unmined before the leader replaces it
    bump_percent          125       a replacement's fee rate is at least this
                                    percentage of the one it replaces
    confirm_depth         6         mainchain confirmations after which the node reports
                                    a payout confirmed (the ledger treats that as final)
    pegout_min_depth      1         sidechain confirmations of a peg-out before it is paid;
                                    committed blocks carry m signatures and do not reorg
    min_pegout            10_000    sats; smaller peg-outs are burned and never paid (a
                                    dust output would make every payout unrelayable)
    min_change            10_000    sats; change below it is folded into the fee
    sweep_margin          None      blocks before the CSV delay at which a federation
                                    output is moved (None: csv_delay // 4)
    max_inputs            50        per payout
    max_pegouts           500       per payout
    incremental_feerate   1000      sat/kvB; BIP125's extra fee per vbyte (Core's default)
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.peg import PegParams


@dataclass(frozen=True)
class WatchmenParams:
    peg: PegParams
    payout_interval: int = 10
    min_feerate: int = 1
    max_feerate: int = 500
    fallback_feerate: int | None = None
    conf_target: int = 6
    bump_after: int = 6
    bump_percent: int = 125
    confirm_depth: int = 6
    pegout_min_depth: int = 1
    min_pegout: int = 10_000
    min_change: int = 10_000
    sweep_margin: int | None = None
    max_inputs: int = 50
    max_pegouts: int = 500
    incremental_feerate: int = 1000

    def __post_init__(self) -> None:
        if self.payout_interval < 1:
            raise ValueError("payout_interval is at least 1")
        if not 1 <= self.min_feerate <= self.max_feerate:
            raise ValueError("need 1 <= min_feerate <= max_feerate (sat/vB)")
        fb = self.fallback_feerate
        if fb is not None and not self.min_feerate <= fb <= self.max_feerate:
            raise ValueError("fallback_feerate must lie within [min_feerate, max_feerate]")
        if not 1 <= self.conf_target <= 1008:
            raise ValueError("conf_target is 1..1008")
        if self.bump_after < 1 or self.bump_percent <= 100:
            raise ValueError("bump_after >= 1 and bump_percent > 100")
        if self.confirm_depth < 1 or self.pegout_min_depth < 1:
            raise ValueError("depths are at least 1")
        # 330 sats is Core's dust threshold for a P2WSH output at the default dust
        # relay fee: change below it could not be relayed.
        if self.min_change < 330 or self.min_pegout < 546:
            raise ValueError("min_change >= 330 and min_pegout >= 546 (Core's dust thresholds)")
        if self.sweep_margin is not None and not 0 <= self.sweep_margin < self.peg.csv_delay:
            raise ValueError("sweep_margin must be below the CSV delay")
        if self.max_inputs < 1 or self.max_pegouts < 1:
            raise ValueError("max_inputs and max_pegouts are at least 1")
        if self.incremental_feerate < 0:
            raise ValueError("incremental_feerate is not negative")

    @property
    def min_rate_kvb(self) -> int:
        return self.min_feerate * 1000

    @property
    def max_rate_kvb(self) -> int:
        return self.max_feerate * 1000

    @property
    def effective_sweep_margin(self) -> int:
        return self.peg.csv_delay // 4 if self.sweep_margin is None else self.sweep_margin


__all__ = ["WatchmenParams"]
