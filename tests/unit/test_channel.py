"""The channel between the master and a child (tq.channel): the shared-memory slot a child
publishes its state in, and the pipe's messages."""

from __future__ import annotations

import os

from tq.channel import BUSY, IDLE, ChildState, PipeReader, PipeWriter, Slot


def test_the_slot_tells_a_live_child_from_a_stopped_one():
    slot = Slot()
    slot.state = ChildState(BUSY, heartbeat=10.0)
    slot.publish()
    assert slot.alive() == 10.0
    slot.beat(25.0)                   # the child's watch thread
    assert slot.alive() == 25.0


def test_slot_is_shared_across_fork():
    slot = Slot()
    pid = os.fork()
    if pid == 0:
        slot.state = ChildState(BUSY, 1.5, 2.5, 3.5, 7, 1, 3, "task-id", "email", "mail")
        slot.publish()
        os._exit(0)
    os.waitpid(pid, 0)
    got = slot.read()
    assert (got.state, got.task, got.type, got.queue, got.processed, got.max_retries) == (
        BUSY, "task-id", "email", "mail", 7, 3)
    assert got.state_name == "busy" and ChildState(IDLE).state_name == "idle"


def test_pipe_messages_survive_partial_reads():
    r, w = os.pipe()
    reader, writer = PipeReader(r), PipeWriter(w)
    writer.send("ready", queues=["a"])
    os.write(w, b'{"e":"tally","d":')
    assert [m["e"] for m in reader.read()] == ["ready"]
    os.write(w, b'{}}\nnot json\n')
    assert reader.read() == [{"e": "tally", "d": {}}]
    os.close(w)
    reader.read()
    assert reader.eof
