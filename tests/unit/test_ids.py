"""Task ids: 17 URL-safe characters that encode their creation time (and sort by it) and a
hint of their queue's name; ids of 16 (made before the hint) are still read."""

from __future__ import annotations

import string
import zlib

import pytest

from tq import ids
from tq.task import Task


def test_a_task_id_is_17_url_safe_characters_and_encodes_its_time_and_queue():
    tid = ids.new_id(1_700_000_000_123, queue="email")
    assert len(tid) == ids.ID_LENGTH == 17
    assert set(tid) <= set(string.ascii_letters + string.digits + "-_")
    assert ids.created_ms(tid) == 1_700_000_000_123
    assert ids.queue_hint(tid) == ids.hint_of("email") != ids.hint_of("emails")
    # the hint is the low 24 bits of the name's CRC-32 (docs/protocol.md), 6 bits a character
    crc = zlib.crc32(b"email") & 0xFFFFFF
    alphabet = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
    assert ids.hint_of("email") == "".join(alphabet[(crc >> s) & 63] for s in (18, 12, 6, 0))


def test_ids_made_before_the_queue_hint_are_still_read():
    old = ids.new_id(1_700_000_000_123)   # 16 characters: what workflow ids still are
    assert len(old) == ids.OLD_ID_LENGTH == 16
    assert ids.created_ms(old) == 1_700_000_000_123
    assert ids.queue_hint(old) is None


def test_ids_sort_by_creation_time():
    times = [0, 1, 999, 1_000, 1_700_000_000_000, 1_700_000_000_001, 2**42 - 1]
    made = [ids.new_id(t) for t in times]
    assert sorted(made) == made
    assert [ids.created_ms(t) for t in made] == times


def test_ids_of_this_century_never_look_like_an_option():
    # ids starting with "-" are read as options by shells and CLIs (tq get -Abc...)
    for ms in (1_000_000_000_000, 1_800_000_000_000, 2**42 - 1):
        assert not ids.new_id(ms).startswith("-")


def test_ids_do_not_collide():
    many = {ids.new_id(42) for _ in range(20_000)}   # all in the same millisecond
    assert len(many) == 20_000
    # 36 random bits with the hint: a clash in one millisecond and queue is possible but rare
    # (the enqueue script refuses a taken id and the client retries with a fresh one)
    assert len({ids.new_id(42, queue="q") for _ in range(20_000)}) >= 19_998


@pytest.mark.parametrize("other", ["", "abc", "0" * 36, "not an id at all!", "é" * 16,
                                   "*" * 16])
def test_created_ms_of_a_foreign_id_is_none(other):
    assert ids.created_ms(other) is None


def test_task_created_at_comes_from_its_id():
    tid = ids.new_id(1_600_000_000_500)
    assert Task(tid, "q", "q", {}).created_at == 1_600_000_000.5
    assert Task("custom", "q", "q", {}).created_at is None
