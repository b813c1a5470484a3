"""A reload (SIGHUP) replaces the children one by one: a new one is up before an old one goes."""

from __future__ import annotations

import os

from tq.channel import PipeReader, Slot
from tq.config import load
from tq.supervisor.children import ChildRecord
from tq.supervisor.reload import DONE, SPAWN, STOP, WAIT, Reload, next_step


def _record(index: int, generation: int, born: float, ready: bool = True) -> ChildRecord:
    return ChildRecord(index, 1000 + index, f"w{index}", generation, Slot(),
                       PipeReader(os.pipe()[0]), born=born, ready=ready)


def test_a_reload_starts_a_new_child_before_it_stops_an_old_one():
    old = [_record(0, 1, born=1.0), _record(1, 1, born=2.0)]
    r = Reload.after(None, load({}, env={}), 2, 1)
    assert (r.generation, r.old_generation, r.old_concurrency) == (2, 1, 2)
    assert next_step(r, old, 2) == (SPAWN, None)
    new = _record(2, 2, born=3.0, ready=False)
    assert next_step(r, [*old, new], 2) == (WAIT, None)     # the new one is not up yet
    new.ready = True
    assert next_step(r, [*old, new], 2) == (STOP, old[0])   # the oldest goes first
    old[0].stop_reason = "reload"
    assert next_step(r, [*old, new], 2) == (SPAWN, None)
    old[1].stop_reason = "reload"
    assert next_step(r, [*old, new, _record(3, 2, born=4.0)], 2) == (WAIT, None)   # exiting
    assert next_step(r, [new, _record(3, 2, born=4.0)], 2) == (DONE, None)


def test_a_reload_over_a_reload_goes_back_to_where_the_first_one_began():
    config = load({}, env={})
    first = Reload.after(None, config, 4, 1)
    second = Reload.after(first, load({"concurrency": "2"}, env={}), 2, first.generation)
    assert (second.generation, second.old_config, second.old_concurrency,
            second.old_generation) == (3, config, 4, 1)
