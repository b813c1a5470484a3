"""What a test needs from the machine (a program, a library, a kernel feature), and what its
absence means: a skip on a developer's machine, a failure under CI (`CI` set, as .ci/run does),
whose set-up installs every one of them, so a skip there would hide a test that never ran."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(why: str) -> NoReturn:
    """Skip the test, saying `why` (and how to get it); fail instead under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI installs it (.ci/run), so this test must not skip there",
                    pytrace=False)
    pytest.skip(why)
