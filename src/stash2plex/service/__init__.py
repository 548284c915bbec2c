"""`stash2plex serve`: the engine as a long-running service, with a dashboard and metrics."""
