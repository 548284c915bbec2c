"""`python -m stash2plex`: the command line (the detached worker is started this way)."""

from .cli import main

if __name__ == "__main__":
    main()
