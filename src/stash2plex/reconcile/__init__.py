"""Reconciliation: find and repair every difference between Stash and Plex.

`classify` holds the classes and their repairs (pure; the item-level drift is in
`sync.drift`), `run` one reconcile over the whole library, `recent` the scenes Stash changed
since a time ("Sync Recent Scenes", the reconcile after an outage), and `timer` when the
worker runs them.
"""
