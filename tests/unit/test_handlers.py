"""Handlers and their policies: @tq.handler and tq.Handler register a type's policy, Backoff
spaces retries, Retry(delay=...) is checked, and a handler's broken backoff falls back."""

from __future__ import annotations

import math

import pytest

import tq
from tq.handlers import DEFAULT_BACKOFF, REGISTRY, Backoff, HandlerSpec
from tq.worker.runner import backoff


def test_backoff_without_jitter_is_exponential_and_capped():
    b = Backoff(base=0.5, factor=3, cap=10, jitter=0)
    assert [b(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.5, 4.5, 10, 10]
    assert b(0) == 0.5   # attempt numbers start at 1; 0 is treated as the first


def test_backoff_jitter_spreads_both_ways_within_its_fraction():
    b = Backoff(base=8, factor=2, cap=100, jitter=0.25)
    delays = [b(1) for _ in range(2000)]
    assert all(6 <= d <= 10 for d in delays)
    assert min(delays) < 7 and max(delays) > 9   # really spread, not constant
    assert DEFAULT_BACKOFF(1) > 0


@pytest.mark.parametrize("kwargs", [{"base": -1}, {"factor": 0.5}, {"cap": -1},
                                    {"jitter": 1.5}, {"jitter": -0.1}])
def test_bad_backoff(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


@pytest.mark.parametrize("bad", [lambda n: math.nan, lambda n: -5, lambda n: "soon",
                                 lambda n: 1 / 0])
def test_a_handlers_broken_backoff_falls_back_to_the_default(bad):
    spec = HandlerSpec("t", lambda p, c: None, "t", backoff=bad)
    assert 0 < backoff(spec, 1) < 10


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1, "60", True])
def test_retry_delay_must_be_a_finite_number(delay):
    with pytest.raises(ValueError, match="finite number"):
        tq.Retry(delay=delay)


@pytest.mark.parametrize("delay", [None, 0, 0.25, 60])
def test_retry_keeps_a_delay_it_accepts(delay):
    assert tq.Retry("later", delay=delay).delay == delay


def test_handler_decorator_registers_its_policy(clean_registry):
    @tq.handler("email", max_retries=5, timeout=10, backoff=Backoff(base=2, jitter=0))
    def send(payload, ctx):
        return payload["to"]

    spec = REGISTRY["email"]
    assert spec.func is send and spec.queue == "email"
    assert spec.policy() == {"max_retries": 5, "timeout": 10}
    assert spec.backoff(2) == 4
    assert send({"to": "x"}, None) == "x"   # the decorator returns the function itself


def test_handler_class_form(clean_registry):
    class Resize(tq.Handler):
        type = "resize"
        queue = "images"
        max_retries = 1

        def handle(self, payload, ctx):
            return payload["w"] * 2

    spec = REGISTRY["resize"]
    assert (spec.queue, spec.max_retries, spec.func({"w": 3}, None)) == ("images", 1, 6)


@pytest.mark.parametrize("kwargs", [{"max_retries": -1}, {"max_retries": True},
                                    {"timeout": 0}, {"soft_timeout": -2}, {"queue": "a:b"}])
def test_bad_handler_options(clean_registry, kwargs):
    with pytest.raises(ValueError):
        tq.handler("t", **kwargs)


def test_two_handlers_for_one_type_are_refused(clean_registry):
    tq.handler("dup")(lambda p, c: 1)
    with pytest.raises(ValueError, match="already registered"):
        @tq.handler("dup")
        def other(payload, ctx):
            return 2
