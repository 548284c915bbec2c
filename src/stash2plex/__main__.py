"""`python -m stash2plex`: the command line (the detached worker is started this way)."""

from stash2plex.cli import main

if __name__ == "__main__":
    main()
