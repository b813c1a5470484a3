"""Task ids: 16 URL-safe characters that encode their creation time and sort by it."""

from __future__ import annotations

import string

import pytest

from tq import ids
from tq.task import Task


def test_new_id_is_16_url_safe_characters_and_encodes_its_time():
    tid = ids.new_id(1_700_000_000_123)
    assert len(tid) == ids.ID_LENGTH == 16
    assert set(tid) <= set(string.ascii_letters + string.digits + "-_")
    assert ids.created_ms(tid) == 1_700_000_000_123


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


@pytest.mark.parametrize("other", ["", "abc", "0" * 36, "not an id at all!", "é" * 16,
                                   "*" * 16])
def test_created_ms_of_a_foreign_id_is_none(other):
    assert ids.created_ms(other) is None


def test_task_created_at_comes_from_its_id():
    tid = ids.new_id(1_600_000_000_500)
    assert Task(tid, "q", "q", {}).created_at == 1_600_000_000.5
    assert Task("custom", "q", "q", {}).created_at is None
