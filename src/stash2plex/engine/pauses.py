"""Pauses: holds lifted by a fixed setting or credential, or by Stash answering again. Pure.

A paused queue is checked on a timer with backoff (5 s, 10 s, 20 s, 40 s, then every 60 s): a
check re-reads the settings and, for Plex problems, probes Plex with them, so a fixed token,
URL or library resumes the queue by itself. A hook or task makes the next check due at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

from stash2plex import errors
from stash2plex.records import Pause, PauseKind

CHECK_BASE_SECONDS = 5.0
CHECK_CAP_SECONDS = 60.0

# What each pause asks a person to do when no more specific message is known.
SETTING_OF_KIND: dict[PauseKind, str] = {
    "plex_auth": "plex_token",
    "stash_auth": "Stash API key",
    "config": "",
    "not_configured": "",
    "disabled": "enabled",
    "stash_down": "",
}


def check_delay(checks_failed: int) -> float:
    """Seconds before the next check: 5, 10, 20, 40, then 60 (capped)."""
    return min(CHECK_CAP_SECONDS, CHECK_BASE_SECONDS * 2 ** max(0, checks_failed))


def pause_for(error: errors.SyncError, now: float, sources: dict[str, str]) -> Pause | None:
    """The pause a failure calls for, or None when it is no pause (a job-level failure).

    `sources` says where each setting's value came from, so the message can name it.
    """
    kind: PauseKind
    source = ""
    if isinstance(error, errors.NotConfiguredError):
        kind, setting = "not_configured", ""
    elif isinstance(error, errors.ConfigError):
        kind, setting, source = "config", error.setting, error.source
    elif isinstance(error, errors.AuthError):
        kind = "stash_auth" if error.server == "stash" else "plex_auth"
        setting = SETTING_OF_KIND[kind]
    elif isinstance(error, errors.StashDownError):
        kind, setting = "stash_down", ""
    else:
        return None
    return Pause(
        kind=kind,
        message=error.message,
        since=now,
        next_check_at=now + check_delay(0),
        setting=setting,
        source=source or sources.get(setting, ""),
    )


def never_reached(error: errors.SyncError) -> bool:
    """Whether `error` is Plex not being reached (refused, a timeout, a connection closed
    without an answer, something else answering): where Plex never answered with the
    settings in use, that is most likely a wrong address, not an outage."""
    transient_or_down = error.error_class in (errors.SERVER_DOWN, errors.TRANSIENT)
    return error.server == "plex" and transient_or_down


def address_to_check(error: errors.SyncError) -> errors.ConfigError:
    """`error` as a setting to check: plex_url, or the proxy variable a failed proxy names in
    the error's detail. The pause it makes lifts by itself once Plex answers."""
    setting = str((error.detail or {}).get("setting") or "plex_url")
    stop = "" if error.message.endswith((".", "?", "!")) else "."
    return errors.ConfigError(
        f"{error.message}{stop} Stash2Plex has never reached Plex with these settings: check "
        f"{setting} (the queue goes on by itself once Plex answers)",
        setting=setting,
        server="plex",
    )


def about_reaching_plex(pause: Pause) -> bool:
    """Whether `pause` names what Plex is reached by: plex_url, or a proxy variable."""
    setting = pause.setting.lower()
    return pause.kind == "config" and (setting == "plex_url" or setting.endswith("_proxy"))


def disabled_pause(now: float, source: str) -> Pause:
    """The user switched Stash2Plex off: nothing syncs until it is switched on."""
    return Pause(
        kind="disabled",
        message="Stash2Plex is switched off (setting `enabled`); saved scenes wait",
        since=now,
        next_check_at=now + check_delay(0),
        setting="enabled",
        source=source,
    )


def check_failed(pause: Pause, now: float, replacement: Pause | None = None) -> Pause:
    """A check found the pause still needed: keep it (with a newer message if the cause
    changed, but the original start time) and check again later."""
    base = replacement if replacement is not None else pause
    checks = pause.checks + 1
    return replace(base, since=pause.since, checks=checks, next_check_at=now + check_delay(checks))


def nudged(pause: Pause, now: float) -> Pause:
    """A hook or task arrived: check now (the user may have just fixed the setting)."""
    return replace(pause, next_check_at=min(pause.next_check_at, now))


def needs_a_person(pause: Pause | None) -> bool:
    """True for pauses only a person ends (a worker need not stay up for them for long)."""
    return pause is not None and pause.kind in ("disabled", "not_configured")


def set_in_own_environment(pause: Pause | None, environ: Mapping[str, str] = os.environ) -> bool:
    """True for a pause on a setting whose value came from an environment variable this
    process has (`environ`): fixed elsewhere (another shell, Stash), it stays wrong in this
    process, so the worker must not stay up waiting (nor keep the lock from a hook's
    worker)."""
    variable = environment_variable(pause)
    return variable is not None and variable in environ


def set_in_other_environment(pause: Pause | None, environ: Mapping[str, str] = os.environ) -> bool:
    """True for a pause a process with a variable this one lacks found (a command run with
    a wrong value): this process's own settings may well be right, so it checks at once."""
    variable = environment_variable(pause)
    return variable is not None and variable not in environ


def environment_variable(pause: Pause | None) -> str | None:
    """The environment variable that set the paused-on setting, if one did."""
    source = (pause.source or "") if pause is not None else ""
    return source.removeprefix("environment ") if source.startswith("environment ") else None
