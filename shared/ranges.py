"""Value ranges: the bounds of a numeric setting or option, each checked one way, with one
wording of the error that names the value and its range.

Two ways in, one per kind of input:

- `validate(value, name)`: a value given in Python (a task option, a handler's limit) must
  already be an int (a bool is not) or a number; the message starts with `name`.
- `parse(raw)`: a setting as written (a flag, TQ_<NAME>, the config file) may be text; the
  message leaves the naming to the caller, which knows where the value came from.

Both raise ValueError; the callers turn it into their own error where they need one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True, slots=True)
class IntRange:
    """The integers from lo to hi, both included."""

    lo: int
    hi: int
    grouped: bool = False   # the message writes the bounds as 1,000,000

    def __str__(self) -> str:
        if self.grouped:
            return f"an integer from {self.lo:,} to {self.hi:,}"
        return f"an integer from {self.lo} to {self.hi}"

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) \
            and self.lo <= value <= self.hi

    def error(self, value: object, name: str = "") -> ValueError:
        """The error saying that `value` (of `name`) is not in the range."""
        return ValueError(f"{name + ' ' if name else ''}must be {self}, not {value!r}")

    def validate(self, value: object, name: str) -> int:
        """`value` if it is an int within the range, else ValueError naming `name`."""
        if value not in self:
            raise self.error(value, name)
        return cast(int, value)

    def parse(self, raw: Any) -> int:
        """A setting's integer: an int, its text, or a float without a fraction."""
        try:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            n = int(raw)
        except (TypeError, ValueError, OverflowError):
            raise self.error(raw) from None
        if not self.lo <= n <= self.hi:
            raise self.error(raw)
        return n


@dataclass(frozen=True, slots=True)
class FloatRange:
    """The numbers from lo (or above lo, when lo_open) to hi."""

    lo: float
    hi: float
    lo_open: bool = False
    text: str = ""   # the message's wording of the range, where it is not the usual one

    def __str__(self) -> str:
        if self.text:
            return self.text
        low = f"above {_num(self.lo)}" if self.lo_open else f"from {_num(self.lo)}"
        return f"a finite number {low} to {_num(self.hi)}"

    def _within(self, x: Any) -> bool:
        # compared as given, so NaN (every comparison false) and an int too large for a
        # float are refused without a conversion that could raise
        return (x > self.lo if self.lo_open else x >= self.lo) and x <= self.hi

    def error(self, value: object, name: str = "") -> ValueError:
        """The error saying that `value` (of `name`) is not in the range."""
        return ValueError(f"{name + ' ' if name else ''}must be {self}, not {value!r}")

    def validate(self, value: object, name: str) -> float:
        """`value` as a float if it is an int or a float within the range, else ValueError
        naming `name`."""
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not self._within(value):
            raise self.error(value, name)
        return float(value)

    def parse(self, raw: Any) -> float:
        """A setting's number: an int, a float or its text, finite and within the range."""
        try:
            x = math.nan if isinstance(raw, bool) else float(raw)
        except (TypeError, ValueError, OverflowError):
            x = math.nan
        if not (math.isfinite(x) and self._within(x)):
            raise self.error(raw)
        return x
