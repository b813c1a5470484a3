"""Which queue a child serves first on each claim: weighted-fair by default, strict on demand.

A claim takes its batch from the first queue that has work, then the next (claim.lua). With
several queues, the first one is picked per claim by smooth weighted round-robin (nginx's
algorithm): over any run of claims each queue comes first in proportion to its weight, evenly
spread (weights 5:1 give A A B A A A A A B...-like sequences, never a burst of B), so no queue
with ready tasks waits for the others to drain. The rest follow in the order of what they are
owed. `--strict` keeps the configured order on every claim: earlier queues starve later ones
while they have work, which is what some deployments want (a "critical" queue).
"""

from __future__ import annotations

from collections.abc import Sequence


class QueueOrder:
    def __init__(self, weights: dict[str, int] | None = None, strict: bool = False) -> None:
        self.weights = dict(weights or {})
        self.strict = strict
        self.current: dict[str, float] = {}

    def next(self, queues: Sequence[str]) -> list[str]:
        """The order of `queues` for the next claim."""
        if self.strict or len(queues) < 2:
            return list(queues)
        total = 0
        current = self.current
        for q in queues:
            w = self.weights.get(q, 1)
            current[q] = current.get(q, 0) + w
            total += w
        first = max(queues, key=lambda q: current[q])
        current[first] -= total
        rest = sorted((q for q in queues if q != first), key=lambda q: -current[q])
        return [first, *rest]
