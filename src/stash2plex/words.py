"""Counted nouns in user text: one helper, so no message says "1 scenes" or "scene(s)".

Standard library only (the engine, the tasks and the command line all use it).
"""

from __future__ import annotations


def plural(count: int | float, word: str, words: str | None = None) -> str:
    """'1 scene', '0 scenes', '12 scenes': the count with the noun in the right number.

    `words` is the plural form when it is not `word` + "s" ('1 library', '2 libraries').
    Counts that are whole floats print without a decimal point ('30 days').
    """
    shown = f"{count:g}" if isinstance(count, float) else str(count)
    return f"{shown} {word if count == 1 else (words or word + 's')}"


def agree(count: int | float, one: str, many: str) -> str:
    """The verb phrase that agrees with `count` things: `one` for 1, else `many`
    ('1 scene waits', '2 scenes wait'), so a sentence's verb follows its counted noun."""
    return one if count == 1 else many
