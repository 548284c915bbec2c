"""`stash2plex serve`: the engine as a long-running process, with the HTTP side beside it.

- The worker is the same engine the plugin starts, with no idle exit: it holds the worker
  lock for the life of the service, so hooks see a worker running and start none. If another
  worker holds the lock when the service starts (one the plugin started), the service waits
  for it to finish and then takes over; nothing is drained twice.
- HTTP runs in its own thread (uvicorn, with no signal handling of its own); the main thread
  owns SIGTERM and SIGINT: the worker finishes the job in hand, the HTTP server closes, and
  the process exits 0.
- Binding to anything but loopback needs a token (`--token-file` or STASH2PLEX_SERVE_TOKEN).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash2plex.engine.worker_lock import open_lock_file, try_lock
from stash2plex.store.db import Store

log = logging.getLogger("stash2plex.service")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_ENV = "STASH2PLEX_SERVE_TOKEN"
#: How often the service looks whether another worker released the lock.
LOCK_POLL_SECONDS = 1.0
HTTP_START_SECONDS = 10.0
MIN_TOKEN_LENGTH = 16


class ServeError(RuntimeError):
    """The service cannot start as asked; the message says what to change."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token, and a token too short to guess."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ServeError(f"the token must be at least {MIN_TOKEN_LENGTH} characters long")
    if not is_loopback(host) and not token:
        raise ServeError(
            f"refusing to listen on {host} without a token: anyone who can reach it could "
            f"change the queue. Set {TOKEN_ENV} or --token-file, or bind 127.0.0.1"
        )


def read_token(token_file: Path | None) -> str | None:
    """The token from `token_file` (first line) or STASH2PLEX_SERVE_TOKEN; None if neither."""
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ServeError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise ServeError(f"the token file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


@dataclass
class ServiceOptions:
    data_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    #: Builds an engine Context from the store (settings, Stash and Plex clients).
    context_factory: Callable[[Store], Any] | None = None


class Service:
    """One `stash2plex serve` process: worker thread, HTTP thread, signal-driven shutdown."""

    def __init__(self, options: ServiceOptions) -> None:
        from stash2plex.service.metrics import ServiceMetrics

        check_bind(options.host, options.token)
        self.options = options
        self.data_dir = options.data_dir
        self.metrics = ServiceMetrics(self.data_dir)
        self._stopping = threading.Event()
        self._worker: Any = None
        self._worker_lock = threading.Lock()
        self._worker_error: BaseException | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ the engine
    def _instrumented_context(self, store: Store) -> Any:
        from stash2plex.engine.context import build_context

        factory = self.options.context_factory or build_context
        context = factory(store)
        observers = context.plex.transport.observers
        if self.metrics.observe_plex_response not in observers:
            observers.append(self.metrics.observe_plex_response)
        return context

    def _drain_forever(self) -> None:
        """Take the worker lock (waiting for another worker to let go) and drain until asked
        to stop."""
        from stash2plex.engine.worker import Worker

        fd = open_lock_file(self.data_dir)
        waited = False
        while not try_lock(fd):
            if not waited:
                log.info("another worker is draining; taking over when it exits")
                waited = True
            if self._stopping.wait(LOCK_POLL_SECONDS):
                os.close(fd)
                return
        try:
            worker = Worker(
                self.data_dir,
                idle_exit_seconds=math.inf,
                context_factory=self._instrumented_context,
                keeps_settings=True,
            )
        except BaseException:
            os.close(fd)
            raise
        with self._worker_lock:
            self._worker = worker
            if self._stopping.is_set():
                worker.request_stop()
        self.metrics.reset_drain()
        worker.run(fd, progress=self.metrics.observe_drain)  # closes fd when it returns

    def _worker_main(self) -> None:
        try:
            self._drain_forever()
        except BaseException as exc:  # reported by run(); the service then stops
            self._worker_error = exc
            log.exception("the worker stopped with an error")
        finally:
            self._stopping.set()

    def _secrets(self) -> tuple[str, ...]:
        context = getattr(self._worker, "_context", None)
        return context.config.secrets() if context is not None else ()

    def stop(self) -> None:
        """Begin a clean shutdown (what SIGTERM does)."""
        self._stopping.set()
        with self._worker_lock:
            if self._worker is not None:
                self._worker.request_stop()

    # ------------------------------------------------------------------ running
    def run(
        self, *, install_signals: bool = True, ready: Callable[[str], None] | None = None
    ) -> int:
        """Serve until SIGTERM/SIGINT (or `stop()`); returns the exit code (0 clean)."""
        import uvicorn

        from stash2plex.engine.worker import configure_worker_logging
        from stash2plex.service.app import create_app

        with Store.open(self.data_dir):
            pass  # create and migrate the store before either thread needs it
        configure_worker_logging(self.data_dir, self._secrets)
        app = create_app(
            self.data_dir,
            metrics=self.metrics,
            token=self.options.token,
            loopback_only=is_loopback(self.options.host),
            context_factory=self._instrumented_context,
        )
        config = uvicorn.Config(
            app,
            host=self.options.host.strip("[]"),
            port=self.options.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            server_header=False,
        )
        server = uvicorn.Server(config)
        http = threading.Thread(target=server.run, name="stash2plex-http", daemon=True)
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop())
        http.start()
        if not self._wait_started(server, http):
            raise ServeError(
                f"could not listen on {self.options.host}:{self.options.port} "
                "(is the port already in use?)"
            )
        self.port = server.servers[0].sockets[0].getsockname()[1]
        address = f"http://{_url_host(self.options.host)}:{self.port}/"
        if ready is not None:
            ready(address)
        worker = threading.Thread(target=self._worker_main, name="stash2plex-worker")
        worker.start()
        while not self._stopping.wait(0.5):
            if not http.is_alive():
                self.stop()
        self.stop()
        worker.join()
        server.should_exit = True
        http.join(timeout=10)
        return 1 if self._worker_error is not None else 0

    def _wait_started(self, server: Any, http: threading.Thread) -> bool:
        waited = 0.0
        while not server.started:
            if not http.is_alive() or waited >= HTTP_START_SECONDS:
                return False
            threading.Event().wait(0.05)
            waited += 0.05
        return True


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def serve(options: ServiceOptions) -> int:
    """Run the service in this process, printing where it listens; the CLI's entry."""

    def ready(address: str) -> None:
        print(f"stash2plex serve: listening on {address}", flush=True)

    try:
        service = Service(options)
        code = service.run(ready=ready)
    except ServeError as exc:
        print(f"stash2plex serve: {exc}", file=sys.stderr, flush=True)
        return 2
    print("stash2plex serve: stopped", flush=True)
    return code
