"""Diagnose: what would block syncing, each problem with its fix.

Checks, in order, stopping where later checks cannot run: Stash reachable; settings complete
and valid; Plex reachable and the token accepted; the libraries readable and of a kind scenes
can be synced into; the path mapping, tried on a sample of scenes (suggesting a `path_map`
rule when Plex holds the same file names under another root, only one that makes them match);
one sample scene's cover downloaded from Stash as a sync downloads it (unless posters and
background art are both switched off); Plex items that hold files of several scenes
(conflicts); and the queue's own holds and dead letters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from stash2plex import errors
from stash2plex.clients.plex import PlexClient
from stash2plex.engine import pauses
from stash2plex.engine.context import answered_before, connect_stash, load_config, stash_address
from stash2plex.paths import basename, nfc, path_key, split_path
from stash2plex.settings.config import setting_label
from stash2plex.settings.sources import LocalSettings, source_words, unknown_variables
from stash2plex.store.db import Store
from stash2plex.sync.matching import MAPPED_PATH, match_scene, part_holders
from stash2plex.sync.pathmap import map_path, parse_path_map
from stash2plex.sync.syncer import ADD_LIBRARY, PlexIndex
from stash2plex.words import plural

SAMPLE_SIZE = 25
# Sample scenes whose cover Diagnose tries to download (each is one request to Stash).
COVER_TRIES = 3
# Plex items with several files whose owners are looked up in Stash (one query per file).
CONFLICT_SAMPLE = 50
_ADD_LIBRARY = (
    "In Plex, add a library of type Movies or Other Videos holding your Stash folder (Add Library)."
)


@dataclass(frozen=True)
class Check:
    """One finding. `setting`: the setting to change when that is the fix (a configuration
    problem: the command line exits 2 for it, 1 for other problems)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    setting: str = ""


def _where(key: str, sources: dict[str, str]) -> str:
    """' (its value comes from the environment variable STASH2PLEX_PLEX_URL)' or ''."""
    if not key:
        return ""
    return f" (its value comes from the {source_words(sources.get(key, 'default'))})"


def _correct(key: str, sources: dict[str, str]) -> str:
    """Where to correct setting `key`: where its value came from (an environment variable or
    the settings file override Stash's plugin settings, so correcting it there would not
    help)."""
    label = setting_label(key)
    source = sources.get(key, "")
    if source.startswith("environment "):
        variable = source.split(" ", 1)[1]
        return (
            f"Correct the environment variable {variable} that sets {label}, or unset it "
            "(the value in Settings > Plugins > Stash2Plex then applies)."
        )
    if source.startswith("file "):
        return f"Correct {label} in the settings file {source.split(' ', 1)[1]}."
    return f"Correct {label} in Settings > Plugins > Stash2Plex."


def _environment_fix(error: errors.SyncError | None) -> tuple[str, str] | None:
    """(variable, fix) when the failure lies in this machine's environment, not a setting: a
    proxy or CA bundle variable that cannot work (a ConfigError naming the variable), or a
    proxy that failed (its message names it)."""
    if error is None:
        return None
    if isinstance(error, errors.ConfigError) and error.setting.isupper():
        return error.setting, (
            f"Correct or unset the environment variable {error.setting} as the message says "
            "(the worker reads it when it starts)."
        )
    if "through the proxy" in error.message:
        return "", (
            "Start the proxy the message names, or list the server's host in NO_PROXY in the "
            "environment Stash2Plex runs in."
        )
    return None


def _plex_down(error: errors.SyncError, plex: PlexClient, store: Store, config: Any) -> bool:
    """Whether Plex failing the health check is Plex down at a right address: it answered
    this check itself (a 503 while it starts), or it answered at `plex_url` before. Where it
    never answered, the address is the likelier fault (`pauses.never_reached`)."""
    if not pauses.never_reached(error):
        return False
    return plex.answered or answered_before(store, config.plex_url)


def _stash_fix(error: errors.SyncError, local: LocalSettings | None) -> tuple[str, str]:
    """(setting, fix) when Stash could not be read: a key Stash refused, an address that
    redirects or is not one (a ConfigError naming `stash_url`, corrected where it was set),
    or Stash not answering."""
    if error.error_class == errors.AUTH:
        return "stash_api_key", (
            "Give Stash2Plex a current API key (Stash > Settings > Security) in "
            "STASH2PLEX_STASH_API_KEY, or run it from a Stash task, which brings its own login."
        )
    if isinstance(error, errors.ConfigError) and error.setting:
        source = (local.sources if local is not None else {}).get(error.setting, "")
        where = f" in the {source_words(source)}" if source else ""
        return error.setting, f"Correct {setting_label(error.setting)}{where} as the detail says."
    return "", (
        "Make sure Stash is running; outside Stash set STASH2PLEX_STASH_URL and "
        "STASH2PLEX_STASH_API_KEY."
    )


def _settings_check(sources: dict[str, str]) -> Check:
    """Where each setting that is not at its default came from, and the required ones."""
    from stash2plex.settings.config import SETTINGS

    shown = [
        f"{setting_label(s.key)}: {source_words(sources.get(s.key, 'default'))}"
        for s in SETTINGS
        if s.required or sources.get(s.key, "default") != "default"
    ]
    others = len(SETTINGS) - len(shown)
    if others:
        shown.append(f"{plural(others, 'other setting')}: default")
    return Check("settings", True, "; ".join(shown))


def diagnose(
    store: Store, connection: dict[str, Any] | None = None, local: LocalSettings | None = None
) -> list[Check]:
    checks: list[Check] = []
    try:
        stash = connect_stash(store, connection, local)
        version = stash.version()
    except errors.SyncError as exc:
        variable, fix = _environment_fix(exc) or _stash_fix(exc, local)
        return [Check("Stash", False, exc.message, fix, setting=variable)]
    url, source = stash_address(store, local)
    checks.append(
        Check("Stash", True, f"Stash {version} answers at {url} ({source_words(source)})")
    )
    config, sources = load_config(stash, local)
    checks.append(_settings_check(sources))
    for name in unknown_variables():
        checks.append(
            Check(
                name,
                False,
                f"{name} is set but is not a setting Stash2Plex reads",
                "Correct its name (docs/settings.md lists every setting) or unset it.",
            )
        )
    invalid = set()
    for warning in config.warnings:
        key = next((k for k in _setting_keys() if f"({k})" in warning), "")
        invalid.add(key)
        checks.append(Check(f"setting {key}", False, warning, _correct(key, sources), key))
    # A required setting given a value that is not valid is not missing too: one problem.
    missing = [key for key in config.missing if key not in invalid]
    if missing:
        labels = ", ".join(setting_label(key) for key in missing)
        # Empty where an override sets it (a variable, the settings file): it hides the value
        # in Stash, so that is where to fix it.
        overridden = [
            k for k in missing if sources.get(k, "").startswith(("environment ", "file "))
        ]
        fix = (
            f"{_correct(overridden[0], sources)} It is empty there, which hides any value in "
            "Stash's plugin settings."
            if overridden
            else "Set them in Settings > Plugins > Stash2Plex (see docs/settings.md)."
        )
        checks.append(
            Check("settings", False, f"missing: {labels}", fix, setting=(overridden or missing)[0])
        )
    if config.missing:
        return checks
    if not config.enabled:
        checks.append(
            Check(
                "enabled",
                False,
                "Stash2Plex is switched off",
                "Tick 'Enabled' in Settings > Plugins > Stash2Plex.",
            )
        )
    plex = PlexClient(
        config.plex_url,
        config.plex_token,
        timeout=min(config.plex_timeout, 15),
        verify_tls=config.verify_tls,
    )
    health = plex.health()
    if not health.ok:
        environment = _environment_fix(health.error)
        if environment is not None:
            key, fix = environment
        elif isinstance(health.error, errors.ConfigError) and health.error.setting:
            key = health.error.setting  # e.g. verify_tls for a self-signed certificate
            fix = f"Change {setting_label(key)}{_where(key, sources)} as the detail says."
        elif health.error_class == errors.AUTH:
            key = "plex_token"
            fix = f"Copy a fresh X-Plex-Token into {setting_label(key)}{_where(key, sources)}."
        elif health.error is not None and _plex_down(health.error, plex, store, config):
            key = ""  # the address is right: Plex is down, not a setting (exit 1, as health)
            fix = (
                "Start Plex, or wait while it restarts or updates: the queue holds, and the "
                "scenes sync by themselves when Plex is back."
            )
        else:
            key = "plex_url"
            fix = (
                f"Check {setting_label(key)}{_where(key, sources)} and that Plex is running "
                "and reachable from Stash's machine."
            )
        checks.append(Check("Plex", False, health.detail, fix, setting=key))
        return checks
    checks.append(Check("Plex", True, f"{health.detail} in {health.latency_ms:.0f} ms"))
    index = PlexIndex(store, plex, config)
    try:
        sections = index.sections()
        index.refresh(force=True, full=True)
    except errors.SyncError as exc:
        close = (exc.detail or {}).get("did_you_mean")
        names = f"'{close}'" if close else "the names of the Plex libraries holding your files"
        fix = (
            _ADD_LIBRARY
            if (exc.detail or {}).get(ADD_LIBRARY)
            else f"Change {setting_label('plex_library')}{_where('plex_library', sources)} to "
            f"{names}."
        )
        checks.append(Check("libraries", False, exc.message, fix, setting="plex_library"))
        return checks
    if not sections:
        checks.append(
            Check(
                "libraries",
                False,
                "no movie or other-videos library in Plex",
                _ADD_LIBRARY,
            )
        )
        return checks
    titles = ", ".join(s["title"] for s in sections)
    checks.append(
        Check("libraries", True, f"{titles}: {plural(store.index_size(), 'item')} indexed")
    )
    _, sample = stash.find_scenes(per_page=SAMPLE_SIZE)
    checks.append(_path_check(sample, store, config))
    if not (config.skip_poster and config.skip_art):
        checks.append(_cover_check(stash, sample))
    checks.append(_conflict_check(stash, store, config))
    checks.extend(_queue_checks(store))
    return checks


def _path_check(scenes: list[dict[str, Any]], store: Store, config) -> Check:
    with_files = [s for s in scenes if s.get("files")]
    if not with_files:
        return Check("path mapping", True, "no scene with a file to test")
    exact, by_name, missing = 0, [], []
    for scene in with_files:
        result = match_scene(
            scene["files"], config.path_map, store.index_by_path, store.index_by_basename
        )
        if result.match is None:
            missing.append(scene["files"][0]["path"])
        elif result.match.rule == MAPPED_PATH:
            exact += 1
        else:
            by_name.append(scene["files"][0]["path"])
    detail = f"{exact + len(by_name)} of {len(with_files)} sample scenes match a Plex item" + (
        f" ({len(by_name)} by file name and size only)" if by_name else ""
    )
    if not missing and not by_name:
        return Check("path mapping", True, detail)
    suggestion = _suggest_rule(missing + by_name, store)
    example = (missing or by_name)[0]
    fix = f"For example {example} was looked for as {map_path(example, config.path_map)}. "
    label = setting_label("path_map")
    fix += (
        f"Plex holds these files under another root: set {label} to '{suggestion}'."
        if suggestion
        else f"Make sure the Plex library covers Stash's folders, or set {label} "
        "('/stash/prefix => /plex/prefix')."
    )
    # Matching by name and size works but is a guess-free fallback only while names are unique.
    return Check(
        "path mapping", not missing, detail, fix, setting="" if not missing else "path_map"
    )


def _cover_check(stash, scenes: list[dict[str, Any]]) -> Check:
    """Download a real cover among the sample scenes, as a sync does (the address Stash hands
    out, rebased to Stash's own when it is Stash's behind `external_host`), trying at most
    COVER_TRIES scenes (Stash's placeholder for a scene without a cover counts: its headers
    are read, not its body). A cover that fails while another downloads is that scene's
    problem; when every one tried fails, every poster and background fails alike."""
    failed: list[tuple[int, errors.SyncError]] = []
    tried = 0
    for scene in scenes:
        url = (scene.get("paths") or {}).get("screenshot")
        if not url or tried >= COVER_TRIES:
            continue
        tried += 1
        try:
            image = stash.image(url)
        except errors.SyncError as exc:
            failed.append((int(scene["id"]), exc))
            continue
        if image.placeholder:  # Stash's drawing for a scene without a cover
            continue
        size = max(1, round(len(image.data) / 1024))
        downloads = f"the cover of scene {scene['id']} downloads ({size} KB)"
        if not failed:
            return Check("covers", True, downloads)
        broken_id, broken = failed[0]
        return Check(
            "covers",
            False,
            f"{downloads}, but scene {broken_id}'s cannot be downloaded: {broken.message}",
            "That scene's screenshot may be missing or broken in Stash: generate it again "
            "(Tasks > Generate, or Generate in the scene's operations menu).",
        )
    if not failed:
        return Check("covers", True, "no sample scene has a cover to try")
    first_id, first = failed[0]
    return Check(
        "covers",
        False,
        f"no cover could be downloaded from Stash (scene {first_id}: {first.message})",
        "Posters and backgrounds are not synced until this works. " + _cover_fix(first),
    )


def _cover_fix(error: errors.SyncError) -> str:
    """What to do when no cover downloads, by what failed."""
    if isinstance(error, errors.AuthError):
        return "Stash refused the credentials Stash2Plex uses: act on the detail above."
    if isinstance(error, errors.ServerDownError) or "cannot be reached" in error.message:
        return (
            "Stash hands out image addresses this machine cannot reach: if Stash runs behind "
            "a reverse proxy, check external_host in Stash's config.yml (it is not in Stash's "
            "settings pages); see docs/troubleshooting.md."
        )
    return (
        "Stash answers queries but refuses or fails its images: see Stash's log, and let the "
        "image routes (/scene/<id>/screenshot) through any proxy or login in front of Stash."
    )


def _suggest_rule(stash_paths: list[str], store: Store) -> str | None:
    """A `path_map` rule from a Stash path and the Plex path with the same file name, offered
    only if it really makes that path match (paths compare in one Unicode form, Windows paths
    without case: a difference of spelling alone needs no rule)."""
    for path in stash_paths:
        candidates = store.index_by_basename(basename(path))
        if len(candidates) != 1:
            continue
        plex_path = candidates[0].path
        stash_parts, plex_parts = split_path(path), split_path(plex_path)
        common = 0
        while common < min(len(stash_parts), len(plex_parts)) - 1 and path_key(
            nfc(stash_parts[-2 - common]), windows=True
        ) == path_key(nfc(plex_parts[-2 - common]), windows=True):
            common += 1
        stash_prefix = _join_like(path, stash_parts[: len(stash_parts) - 1 - common])
        plex_prefix = _join_like(plex_path, plex_parts[: len(plex_parts) - 1 - common])
        if not stash_prefix or not plex_prefix or path_key(stash_prefix) == path_key(plex_prefix):
            continue
        rule = f"{stash_prefix} => {plex_prefix}"
        mapped = map_path(path, parse_path_map(rule))
        if any(e.rating_key == candidates[0].rating_key for e in store.index_by_path(mapped)):
            return rule
    return None


def _join_like(path: str, parts: list[str]) -> str:
    """Segments joined with the separator the path itself uses ("/" for a root)."""
    separator = "\\" if "\\" in path and "/" not in path else "/"
    joined = separator.join(parts)
    return joined or ("/" if path.startswith("/") and parts else "")


def _conflict_check(stash, store: Store, config) -> Check:
    """Plex items holding files of several Stash scenes (Plex stacked `part1`/`part2` files,
    or several versions): those scenes wait, and nothing is written to the item."""
    rules = config.path_map
    conflicts: dict[int, set[int]] = {}
    for rating_key in store.multi_part_items()[:CONFLICT_SAMPLE]:
        parts = store.item_files(rating_key)
        files_of = {
            int(scene["id"]): scene.get("files") or []
            for path, _ in parts
            for scene in stash.scenes_with_file(basename(path))
        }
        # An exact path beats a name and size: a same-named file elsewhere is no owner.
        owners = set(part_holders(parts, files_of, rules))
        if len(owners) > 1:
            conflicts[rating_key] = owners
    for job in store.jobs("waiting"):
        if job.reason == "conflict" and job.detail and job.detail.get("rating_key"):
            conflicts.setdefault(int(job.detail["rating_key"]), set()).update(
                int(i) for i in job.detail.get("scene_ids") or []
            )
    if not conflicts:
        return Check("conflicts", True, "no Plex item holds files of several scenes")
    described = "; ".join(
        f"scenes {', '.join(str(i) for i in sorted(ids))} are one Plex item ({rating_key})"
        for rating_key, ids in sorted(conflicts.items())
    )
    return Check(
        "conflicts",
        False,
        f"{described}: nothing is written to these items",
        "Merge the scenes in Stash if they are one video, or split the item apart in Plex "
        "(its ... menu > Split Apart); the scenes then sync by themselves.",
    )


def _queue_checks(store: Store) -> list[Check]:
    from stash2plex.operations.queue import hold_message

    checks = []
    holds = store.holds()
    message = hold_message(holds)
    if message is not None:
        fix = (
            "It lifts by itself at the next passing health probe."
            if holds.pause is None
            else "Fix it; the queue resumes by itself (a saved scene or any task checks at once)."
        )
        checks.append(Check("queue", False, f"held: {message}", fix))
    dead = store.dead_letter_counts()
    if dead:
        summary = ", ".join(f"{n} {cls}" for cls, n in dead.items())
        checks.append(
            Check(
                "dead letters",
                False,
                summary,
                "See `stash2plex dlq list`; retry with 'Retry Dead Letters'.",
            )
        )
    return checks


def as_dicts(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]


def _setting_keys() -> list[str]:
    from stash2plex.settings.config import SETTINGS

    return [s.key for s in SETTINGS]
