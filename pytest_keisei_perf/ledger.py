"""The session's one false-discovery ledger: every p-value of a regression test, and BH over them.

The stored-baseline gate, the A/B gate and ``keisei-perf compare`` all ask it, so a session's
passing comparisons count in the correction wherever they were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from . import stats

__all__ = ["FalseDiscoveryLedger"]


@dataclass
class FalseDiscoveryLedger:
    """p-values decided so far, and how many comparisons the session expects in all.

    ``expected`` is counted at collection (one per selected benchmark and mode); the ledger
    never corrects over fewer than it has heard.
    """

    expected: int = 0
    p_values: list[float] = field(default_factory=list)
    #: Announced by :meth:`expect`, not yet decided.
    pending: list[float] = field(default_factory=list)

    def decide(self, p_value: float, alpha: float) -> tuple[bool, int]:
        """Whether ``p_value`` is rejected among those heard so far, and over how many
        comparisons; it is then heard too (also when it is not a regression's)."""
        others = self._others(p_value)
        total = max(self.expected, len(others) + 1)
        rejected = stats.online_bh_rejects(p_value, others, total, alpha)
        self.p_values.append(p_value)
        return rejected, total

    def expect(self, p_values: Sequence[float]) -> None:
        """p-values known before they are decided (``keisei-perf compare``): each is then
        judged among all of them, which is BH over the whole batch."""
        self.pending.extend(p_values)

    def _others(self, p_value: float) -> list[float]:
        if p_value in self.pending:
            self.pending.remove(p_value)
        return [*self.p_values, *self.pending]
