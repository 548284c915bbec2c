"""Stash2Plex: push scene metadata from Stash to the matching Plex items, reliably.

This module must stay import-free: the Stash hook path imports the package and has a
budget of 150 ms and 30 MB for the whole process.
"""

__version__ = "0.1.0"
