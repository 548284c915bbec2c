"""The only code that talks to Plex: plexapi's server and transport, with explicit timeouts,
one shared `requests` session, and every failure translated into our error classes.

We send plexapi's own requests (the same paths and parameter encoding as its edit mixins) but
parse listings ourselves and never touch plexapi's partial objects: reading an empty attribute
on one makes a hidden HTTP request, which would break our request budget and our timers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

import requests

from .errors import ServerDownError, translate_plex_errors
from .store import IndexEntry

LISTING_PAGE_SIZE = 500
MOVIE_SEARCH_TYPE = 1


@dataclass(frozen=True)
class Section:
    id: int
    title: str
    type: str
    locations: tuple[str, ...]


@dataclass(frozen=True)
class Health:
    ok: bool
    latency_ms: float
    detail: str


class PlexClient:
    """A lazily connected Plex server. Counts every request it sends (`request_count`)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        verify_tls: bool = True,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.verify = verify_tls
        self._server: Any = None
        self._clock = clock
        self.request_count = 0
        self.session.hooks["response"].append(self._count)

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.request_count += 1

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._token,) if self._token else ()

    def server(self) -> Any:
        """The plexapi PlexServer, connecting on first use (one `GET /`)."""
        if self._server is None:
            from plexapi.server import PlexServer

            with translate_plex_errors(self.secrets):
                self._server = PlexServer(
                    self.url, self._token, session=self.session, timeout=self.timeout
                )
        return self._server

    def reset(self) -> None:
        """Forget the connection (after an outage or a token change)."""
        self._server = None

    def _query(self, path: str, method: str = "get", **kwargs: Any) -> Any:
        server = self.server()
        with translate_plex_errors(self.secrets):
            return server.query(path, method=getattr(server._session, method), **kwargs)

    # ------------------------------------------------------------------ reads
    def sections(self) -> list[Section]:
        root = self._query("/library/sections")
        return [
            Section(
                int(d.get("key")),
                d.get("title", ""),
                d.get("type", ""),
                tuple(loc.get("path", "") for loc in d.iter("Location")),
            )
            for d in (root if root is not None else [])
            if d.tag == "Directory"
        ]

    def list_section(self, section_id: int) -> list[IndexEntry]:
        """Every movie-type item of a section with its file paths, paged."""
        entries: list[IndexEntry] = []
        start = 0
        while True:
            root = self._query(
                f"/library/sections/{section_id}/all?type={MOVIE_SEARCH_TYPE}",
                headers={
                    "X-Plex-Container-Start": str(start),
                    "X-Plex-Container-Size": str(LISTING_PAGE_SIZE),
                },
            )
            if root is None:
                break
            videos = [child for child in root if child.tag == "Video"]
            for video in videos:
                rating_key = int(video.get("ratingKey"))
                for part in video.iter("Part"):
                    size = part.get("size")
                    entries.append(
                        IndexEntry(
                            rating_key,
                            section_id,
                            part.get("file", ""),
                            int(size) if size and size.isdigit() else None,
                        )
                    )
            total = int(root.get("totalSize") or root.get("size") or 0)
            start += LISTING_PAGE_SIZE
            if not videos or start >= total:
                break
        return entries

    def item_detail(self, rating_key: int) -> ET.Element:
        root = self._query(f"/library/metadata/{rating_key}")
        video = root.find("Video") if root is not None else None
        if video is None:
            from .errors import NotInPlexError

            raise NotInPlexError(f"Plex item {rating_key} no longer exists")
        return video

    def health(self) -> Health:
        """Prove Plex is really serving: reachable, token accepted, library readable."""
        started = self._clock()
        try:
            self.reset()
            sections = self.sections()
        except ServerDownError as exc:
            return Health(False, (self._clock() - started) * 1000, exc.message)
        except Exception as exc:  # any classified failure is "not healthy", with its reason
            return Health(
                False, (self._clock() - started) * 1000, getattr(exc, "message", str(exc))
            )
        return Health(True, (self._clock() - started) * 1000, f"{len(sections)} libraries readable")

    # ------------------------------------------------------------------ writes
    def edit(self, section_id: int, rating_key: int, params: dict[str, Any]) -> None:
        """One batched edit of one item: the PUT plexapi's edit mixins send."""
        from plexapi import utils

        args = {"type": MOVIE_SEARCH_TYPE, **params, "id": str(rating_key)}
        self._query(f"/library/sections/{section_id}/all{utils.joinArgs(args)}", method="put")

    def upload_image(self, rating_key: int, kind: str, data: bytes) -> None:
        """Upload poster (`kind="poster"`) or background art (`"art"`) bytes."""
        plural = {"poster": "posters", "art": "arts"}[kind]
        self._query(f"/library/metadata/{rating_key}/{plural}", method="post", data=data)

    def scan_path(self, section_id: int, path: str) -> None:
        """Ask Plex to scan one folder (a partial scan); new items appear later."""
        from urllib.parse import quote_plus

        self._query(f"/library/sections/{section_id}/refresh?path={quote_plus(path)}")
