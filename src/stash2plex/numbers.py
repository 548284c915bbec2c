"""Whole numbers from the outside world (hook payloads, page requests, the JSON API).

JSON and query strings carry ids as numbers or text: `5`, `"5"`, `5.0`. What is not a whole
number in SQLite's integer range is refused, never rounded or guessed: `true` is not scene 1,
`3.7` is not scene 3, and `1e400` or a 30-digit id is not an overflow deep inside the store.
Standard library only: the hook path imports this.
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: importing typing costs the hook process ~5 ms (see plugin/entry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# SQLite's INTEGER range (the store keeps ids as INTEGER).
MAX_WHOLE = 2**63 - 1


class NotANumber(ValueError):
    """Neither a number nor decimal digits (`true`, `null`, `"x"`, a list)."""


def whole_number(raw: Any, *, minimum: int = 0) -> int:
    """`raw` as an int in [`minimum`, 2^63-1].

    Accepts an int, an integral float, or decimal digits (surrounding spaces allowed).
    Raises NotANumber, or ValueError with a short reason ("is not a whole number", "is out
    of range (0 to 2^63-1)").
    """
    if isinstance(raw, bool) or raw is None:
        raise NotANumber("is not a number")
    if isinstance(raw, float):
        if not raw.is_integer():  # also NaN and infinities
            raise ValueError("is not a whole number")
        raw = int(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if not (text.isascii() and text.isdigit()):
            raise NotANumber("is not a number")
        raw = int(text) if len(text) <= 19 else MAX_WHOLE + 1
    if not isinstance(raw, int):
        raise NotANumber("is not a number")
    if not minimum <= raw <= MAX_WHOLE:
        raise ValueError(f"is out of range ({minimum} to 2^63-1)")
    return raw
