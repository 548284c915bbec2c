"""What every benchmark report shares: the machine line and writing the markdown."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def command_line(script: str) -> str:
    """The command that produced a report, as a reader would type it."""
    return f"python bench/{script} " + " ".join(sys.argv[1:])


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_report(out: Path, lines: list[str]) -> None:
    """Write the markdown report and print it."""
    report = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
