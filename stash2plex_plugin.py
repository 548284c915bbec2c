"""Entry point Stash executes for every Stash2Plex hook and task.

Keep this file tiny and standard-library only: it finds the `stash2plex` package (installed
next to this file in a plugin zip, or under src/ in a checkout) and hands over.
"""

import os
import sys

# os.path, not pathlib: a hook's whole process has a budget of three bare interpreter starts.
HERE = os.path.dirname(os.path.realpath(__file__))
for candidate in (HERE, os.path.join(HERE, "src")):
    if os.path.isfile(os.path.join(candidate, "stash2plex", "__init__.py")):
        sys.path.insert(0, candidate)
        break
if os.path.isdir(os.path.join(HERE, "data", "deps")):  # installed on the first task run
    sys.path.append(os.path.join(HERE, "data", "deps"))

from stash2plex.plugin.entry import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(entry_dir=HERE))
