"""tq's refusals of bad input: each is its own error class, and every one is a ValueError, the
one class callers (tq enqueue, the dashboard, a producer) catch to report bad input."""

from __future__ import annotations

import pytest

import tq
from tq.config import load
from tq.errors import ConfigError, PayloadError
from tq.task import encode_payload, validate_name


@pytest.mark.parametrize("refuse, error", [
    (lambda: encode_payload({"x": object()}), PayloadError),
    (lambda: encode_payload([1]), PayloadError),
    (lambda: load({"concurrency": "0"}, env={}), ConfigError),
    (lambda: tq.Client("redis://127.0.0.1:1/0", max_payload_bytes=0), ConfigError),
    (lambda: validate_name("queue", "a b"), ValueError),
    (lambda: tq.Retry(delay=-1), ValueError),
], ids=["payload-type", "payload-not-object", "setting", "client-setting", "name", "retry"])
def test_every_refusal_of_input_is_caught_as_a_value_error(refuse, error):
    with pytest.raises(ValueError) as err:
        refuse()
    assert type(err.value) is error
