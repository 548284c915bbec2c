"""Plex -> Stash: plays, resume points and ratings recorded in Plex come back to Stash.

`decisions` holds the rules (pure), `pull` one catch-up run, `timer` when the worker runs it,
and `stream` the real-time trigger from Plex's notification websocket.
"""
