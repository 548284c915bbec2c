"""Entry point Stash executes for every Stash2Plex hook and task.

Keep this file tiny and standard-library only: it finds the `stash2plex` package (installed
next to this file in a plugin zip, or under src/ in a checkout) and hands over.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for candidate in (HERE, HERE / "src"):
    if (candidate / "stash2plex" / "__init__.py").is_file():
        sys.path.insert(0, str(candidate))
        break
if (HERE / "data" / "deps").is_dir():  # dependencies installed on the first task run
    sys.path.append(str(HERE / "data" / "deps"))

from stash2plex.plugin.entry import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(entry_dir=HERE))
