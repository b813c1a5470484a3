"""Queues set aside as broken (a corrupt key explained a refusal): which ones this worker must
not claim from, and the acks it holds back for a broken queue until that queue is repaired."""

from __future__ import annotations

from collections.abc import Callable

from tq.store.broker import Ack, Broker


class Containment:
    """A view of the broker's Quarantine for one worker, with its held acks. Reads Redis only
    in explain() and repaired(); their callers wait outages out (Outage.call)."""

    def __init__(self, broker: Broker, worker_id: str) -> None:
        self.quarantine = broker.quarantine
        self.qkeys = broker.qkeys
        self.worker_id = worker_id
        self.held_acks: list[Ack] = []   # acks of tasks whose queue was found broken
        # the queues to look at when a refusal names none (the fetcher's: those in line)
        self.suspects: Callable[[], list[str]] = list

    @property
    def broken(self) -> list[str]:
        """The queues set aside: claims leave them out."""
        return list(self.quarantine.queues)

    @property
    def any_broken(self) -> bool:
        return bool(self.quarantine.queues)

    def explain(self, exc: Exception, queues: list[str] | None = None) -> bool:
        """Does a corrupt key of one of `queues` (else the suspects) explain an error reply?
        If so its queue is set aside (see Quarantine.explains)."""
        return self.quarantine.explains(self.suspects() if queues is None else queues, exc,
                                        self._proc)

    def _proc(self, queue: str) -> str:
        return self.qkeys(queue).proc(self.worker_id)

    def hold(self, acks: list[Ack]) -> list[Ack]:
        """The acks that may be sent now; those of a broken queue wait for its repair."""
        broken = self.quarantine.queues
        if not broken:
            return acks
        self.held_acks += [a for a in acks if a.task.queue in broken]
        return [a for a in acks if a.task.queue not in broken]

    def repaired(self) -> list[str]:
        """Queues whose repair was found since the last look (served again); cheap often."""
        return self.quarantine.recheck()

    def release(self, queues: list[str]) -> list[Ack]:
        """The held acks of `queues` (repaired), no longer held."""
        held = [a for a in self.held_acks if a.task.queue in queues]
        self.held_acks = [a for a in self.held_acks if a.task.queue not in queues]
        return held
