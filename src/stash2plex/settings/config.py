"""Settings: their definitions (one table, which also feeds the manifest and the docs) and the
validated configuration built from whatever values Stash, the environment or a file gave.

Stash stores no defaults and shows an untouched BOOLEAN as off, so every default here is what
an absent key means. Validation is per key: a bad value produces a warning naming the key and
the accepted values, and that key falls back to its default; it never disables the plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from stash2plex.errors import without_credentials
from stash2plex.sync.pathmap import PathMapError, PathRule, parse_path_map

PLUGIN_ID = "Stash2Plex"


@dataclass(frozen=True)
class Setting:
    key: str
    type: str  # STRING | NUMBER | BOOLEAN, as Stash's manifest names them
    default: Any
    display_name: str
    description: str
    secret: bool = False
    required: bool = False
    check: Callable[[Any], Any] | None = None  # returns the parsed value or raises ValueError
    # An invalid value stops syncing (a hold naming it) instead of falling back to the
    # default: falling back would sync wrongly (no path mapping) or nowhere (no Plex URL).
    blocking: bool = False

    @property
    def is_address(self) -> bool:
        """A server's address, which may carry a credential (see `errors.without_credentials`)."""
        return self.check is _url


def _url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    example = "e.g. http://192.168.1.10:32400"
    if not text.lower().startswith(("http://", "https://")):
        # The address as typed, with what it lacks, unless it may hold a secret (a login, a
        # query, a token) that a message must not repeat.
        bare = "://" not in text and not any(c in text for c in "@?#/ \t") and text.isascii()
        if bare and "token" not in text.lower():
            example = f"such as http://{text}"
        raise ValueError(f"an address starting with http:// or https://, {example}")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError when not a number from 0 to 65535
    except ValueError:
        raise ValueError(
            f"an address with a host name and a port number up to 65535, {example}"
        ) from None
    if not parts.hostname or any(ch.isspace() for ch in text) or port == 0:
        raise ValueError(f"an address with a host name and no spaces, {example}")
    # An address copied with the token in it (`?X-Plex-Token=…`, from an item's XML view) or a
    # login (`user:token@`): the token belongs in plex_token, where it is kept secret.
    if parts.query or parts.username or parts.password or "token" in unquote(text).lower():
        raise ValueError(
            f"the server's address alone, {parts.scheme}://{parts.hostname}"
            f"{f':{port}' if port else ''}, without a query (?…) or a login (…@): the token "
            "goes into Plex token (plex_token)"
        )
    # Plex Web's page (copied from the browser's address bar) is not the server's API.
    path = parts.path.lstrip("/")
    if path.split("/", 1)[0].lower() == "web" or "index.html" in path.lower() or "#" in text:
        raise ValueError(
            f"the server's address, not Plex Web's page: use {parts.scheme}://{parts.netloc} "
            "(without /web/index.html)"
        )
    return text


def _name_list(value: Any) -> tuple[str, ...]:
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


def _path_rules(value: Any) -> tuple[PathRule, ...]:
    text = str(value)
    try:
        return parse_path_map(text)
    except PathMapError as exc:
        # Name the rule that is wrong, so a person with several rules finds it.
        for rule in text.replace("\n", ";").split(";"):
            try:
                parse_path_map(rule)
            except PathMapError:
                raise ValueError(
                    "rules written '/stash/prefix => /plex/prefix' (several separated by ';'), "
                    f"with a prefix on both sides of '=>'; the rule '{rule.strip()}' is not"
                ) from None
        raise ValueError(str(exc)) from None


def _number(value: Any, accepted: str) -> float:
    """`value` as a finite number, or ValueError saying in words what is accepted."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(accepted) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(accepted)
    return number


def _positive_number(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        words = f"a number from {low:g} to {high:g}"
        number = _number(value, words)
        if not low <= number <= high:
            raise ValueError(words)
        return number

    return check


def _whole_number(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        words = f"a whole number from {low} to {high}"
        number = _number(value, words)
        if number != int(number) or not low <= number <= high:
            raise ValueError(words)
        return int(number)

    return check


RECONCILE_INTERVALS = ("off", "hourly", "daily", "weekly")


def _interval(value: Any) -> str:
    text = str(value).strip().lower()
    if text in ("never", "none", "0"):
        text = "off"
    if text not in RECONCILE_INTERVALS:
        raise ValueError("one of " + ", ".join(RECONCILE_INTERVALS))
    return text


def _flag(key: str, display_name: str, description: str) -> Setting:
    """A checkbox whose unchecked state (Stash's untouched state) is the default."""
    return Setting(key, "BOOLEAN", False, display_name, description)


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "plex_url",
        "STRING",
        "",
        "Plex URL",
        "Address of your Plex Media Server, e.g. http://192.168.1.10:32400. Required.",
        required=True,
        check=_url,
        blocking=True,
    ),
    Setting(
        "plex_token",
        "STRING",
        "",
        "Plex token",
        "Your X-Plex-Token (Plex Web: any item > Get Info > View XML, the value after "
        "X-Plex-Token= in the address). Required. Never shown in logs.",
        secret=True,
        required=True,
    ),
    Setting(
        "plex_library",
        "STRING",
        "",
        "Plex libraries",
        "Comma-separated names of the Plex libraries holding your Stash files. Empty: every "
        "movie and other-videos library.",
        check=_name_list,
    ),
    Setting(
        "path_map",
        "STRING",
        "",
        "Path mapping",
        "How Stash paths become Plex paths when the two see the disk under different roots: "
        "'/stash/prefix => /plex/prefix', several rules separated by ';'. Empty: the same "
        "paths.",
        check=_path_rules,
        blocking=True,
    ),
    Setting(
        "plex_timeout",
        "NUMBER",
        30,
        "Plex timeout (seconds)",
        "How long to wait for one Plex request (connect and read). Default: 30.",
        check=_positive_number(1, 300),
    ),
    Setting(
        "plex_max_concurrency",
        "NUMBER",
        4,
        "Plex requests at once",
        "How many scenes are written to Plex at the same time (edits and image uploads of "
        "different items; one item's writes stay in order). Default: 4; 1 to 16. 1 writes one at a "
        "time.",
        check=_whole_number(1, 16),
    ),
    Setting(
        "plex_max_requests_per_second",
        "NUMBER",
        0,
        "Plex requests per second",
        "A cap on requests per second to Plex, for servers whose database gets \"too busy\" "
        "under bulk edits (a NAS with a slow disk). Default: 0, no cap; at most 1000.",
        check=_positive_number(0, 1000),
    ),
    Setting("enabled", "BOOLEAN", True, "Enabled",
            "Default: on (an untouched setting means on). Off: scenes you save are still "
            "recorded, but nothing is sent to Plex until you switch it back on."),
    Setting("verify_tls", "BOOLEAN", True, "Verify Plex's certificate",
            "For an https Plex URL, check its certificate. Default: on (an untouched setting "
            "means on); switch off only for a self-signed certificate you trust."),
    Setting("max_retries", "NUMBER", 5, "Attempts before giving up",
            "How many times a scene is tried when Plex answers with errors or timeouts before "
            "it goes to the dead-letter queue. Waiting for Plex to come back never counts. "
            "Default: 5.", check=_whole_number(1, 50)),
    Setting("dlq_retention_days", "NUMBER", 30, "Keep dead letters (days)",
            "Dead letters older than this are removed automatically. Default: 30.",
            check=_whole_number(1, 3650)),
    _flag("debug_logging", "Debug logging",
          "Write detailed debug lines to Stash's log and the worker log. Default: off."),
    _flag("obfuscate_paths", "Hide file paths in logs",
          "Replace file paths in every log line, task result, command output and stored "
          "event with stable pseudonyms, so logs can be shared. Default: off."),
    # Field toggles. Stash shows an untouched checkbox as off and stores nothing, so every
    # field that syncs by default is switched off by a `skip_` setting.
    _flag("skip_title", "Do not sync titles",
          "Leave Plex titles alone. Default: off (titles sync; an untitled scene shows its "
          "file name)."),
    _flag("skip_summary", "Do not sync details",
          "Leave Plex summaries alone. Default: off (Stash details sync, line breaks kept)."),
    _flag("skip_date", "Do not sync dates",
          "Leave Plex release dates alone. Default: off. A date of only a year, or a year and "
          "a month, is sent as the first day of that period."),
    _flag("skip_studio", "Do not sync studios", "Leave the Plex studio alone. Default: off."),
    _flag("skip_performers", "Do not sync performers",
          "Leave Plex actors alone. Default: off (performers become actors, mirrored exactly)."),
    _flag("skip_tags", "Do not sync tags",
          "Leave Plex genres alone. Default: off (tags become genres, mirrored exactly)."),
    _flag("skip_collections", "Do not sync collections",
          "Do not put items into collections. Default: off (each item joins a collection named "
          "after its studio). Collections you made in Plex are never touched."),
    _flag("skip_poster", "Do not sync posters",
          "Leave Plex posters alone. Default: off (the scene cover becomes the poster, uploaded "
          "only when it changed)."),
    _flag("skip_art", "Do not sync background art",
          "Leave Plex background art alone. Default: off (the scene screenshot becomes the "
          "background, uploaded only when it changed)."),
    _flag("sync_performer_photos", "Sync performer photos",
          "Give Plex actors their Stash photo. Default: off. Plex must be able to reach Stash's "
          "address to fetch the photos, and when Stash has a password the photo address "
          "carries Stash's API key, which then ends up stored in Plex."),
    _flag("sync_rating", "Sync ratings",
          "Send the Stash rating (0-100) as the Plex user rating (0-10). Default: off."),
    _flag("collection_parent_studio", "Parent studio collection",
          "Also put items into a collection named after the studio's parent studio. "
          "Default: off."),
    _flag("collection_groups", "Group collections",
          "Also put items into a collection per Stash group (movie) they belong to. "
          "Default: off."),
    Setting("tag_include", "STRING", (), "Only these tags",
            "Comma-separated tag names to sync as genres; naming a parent tag includes its "
            "child tags. Empty: every tag.", check=_name_list),
    Setting("tag_exclude", "STRING", (), "Never these tags",
            "Comma-separated tag names never synced as genres; naming a parent tag excludes "
            "its child tags too.", check=_name_list),
    _flag("sync_empty_scenes", "Sync scenes without metadata",
          "Also push a scene that has no metadata of its own yet (no title, details, date, "
          "studio, performers or tags: e.g. just scanned) over its Plex item. Default: off "
          "(such a scene leaves its Plex item as it is, so what a Plex agent found stays and "
          "nothing is locked; it syncs as soon as it gets metadata)."),
    _flag("preserve_plex_edits", "Preserve Plex edits",
          "When a field was changed in Plex after Stash2Plex last wrote it, leave it and "
          "report it instead of overwriting. Default: off (Stash wins)."),
    _flag("trigger_plex_scan", "Ask Plex to scan new files",
          "When a scene's file is not in Plex yet, ask Plex to scan that folder. Default: off "
          "(wait for Plex's own scan)."),
    _flag("skip_not_found", "Drop scenes Plex does not have",
          "Drop a scene whose file is not in Plex instead of waiting for Plex to scan it (for "
          "Plex libraries that hold only part of Stash). Default: off."),
    Setting("label_tags", "STRING", (), "Tags as Plex labels",
            "Comma-separated tag names sent as Plex labels (which Plex uses to limit what "
            "shared users see); naming a parent tag includes its child tags. Labels Stash2Plex "
            "set are replaced when the tags change; labels you add in Plex are kept. While a "
            "name here matches no Stash tag (renamed or deleted), labels are left as they are "
            "and the Plex page says so. Empty (default): no labels.", check=_name_list),
    # Plex -> Stash. Everything that writes to Stash is off until switched on.
    _flag("pull_plays", "Pull plays from Plex",
          "Every play Plex records for a synced item becomes a Stash play at the same time "
          "(never twice; play counts only go up). Default: off."),
    _flag("pull_resume", "Pull resume points from Plex",
          "Where you stopped watching in Plex becomes the scene's resume point in Stash, "
          "whenever it changed in Plex since the last pull. Default: off."),
    _flag("sync_rating_both_ways", "Sync ratings both ways",
          "Ratings flow both ways (implies Sync ratings): a Plex rating of 8/10 becomes 80 in "
          "Stash, a Stash rating of 60 becomes 6/10 in Plex, on every Plex item of the scene. "
          "The side that changed since the last sync wins; when both changed (or on first "
          "contact), the later change wins, by Plex's rating time against the scene's last "
          "update in Stash, two clocks that should agree; an unrated side never clears a rated "
          "one on first contact. Default: off."),
    Setting("pull_account", "STRING", "", "Plex user whose plays count",
            "Whose plays are pulled: empty (default) for the owner of the Plex token, or a "
            "Plex account name or number as the server lists it, or * for every user. "
            "The first pull for a choice not used before reads its whole Plex history "
            "(plays already in Stash are not added again). "
            "Resume points and ratings are always the token owner's.", check=str.strip),
    Setting("pull_interval_minutes", "NUMBER", 15, "Pull every (minutes)",
            "How often a running worker or service catches up on Plex's plays, resume points "
            "and ratings. Default: 15.", check=_whole_number(1, 1440)),
    Setting("reconcile_interval", "STRING", "daily", "Reconcile with Plex",
            "How often every scene is compared with Plex and the differences repaired (as the "
            "task Reconcile and Repair): off, hourly, daily or weekly. Default: daily. With "
            "stash2plex serve it runs on time. The plugin's worker stops when idle, so in "
            "Stash it runs at the first hook or task after it is due (a scene saved, any "
            "Stash2Plex task), once the queue is idle. After a Plex outage the scenes changed "
            "during it are reconciled at once, whatever this says.",
            check=_interval),
)
# fmt: on
SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    plex_url: str = ""
    plex_token: str = ""
    plex_library: tuple[str, ...] = ()
    path_map: tuple[PathRule, ...] = ()
    plex_timeout: float = 30.0
    plex_max_concurrency: int = 4
    plex_max_requests_per_second: float = 0.0
    enabled: bool = True
    verify_tls: bool = True
    max_retries: int = 5
    dlq_retention_days: int = 30
    debug_logging: bool = False
    obfuscate_paths: bool = False
    skip_title: bool = False
    skip_summary: bool = False
    skip_date: bool = False
    skip_studio: bool = False
    skip_performers: bool = False
    skip_tags: bool = False
    skip_collections: bool = False
    skip_poster: bool = False
    skip_art: bool = False
    sync_performer_photos: bool = False
    sync_rating: bool = False
    collection_parent_studio: bool = False
    collection_groups: bool = False
    tag_include: tuple[str, ...] = ()
    tag_exclude: tuple[str, ...] = ()
    sync_empty_scenes: bool = False
    preserve_plex_edits: bool = False
    trigger_plex_scan: bool = False
    skip_not_found: bool = False
    label_tags: tuple[str, ...] = ()
    pull_plays: bool = False
    pull_resume: bool = False
    sync_rating_both_ways: bool = False
    pull_account: str = ""
    pull_interval_minutes: int = 15
    reconcile_interval: str = "daily"
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # Settings whose value is invalid and must be fixed before anything syncs: key -> why.
    invalid: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def pulls(self) -> bool:
        """Whether anything comes back from Plex."""
        return self.pull_plays or self.pull_resume or self.sync_rating_both_ways

    @property
    def missing(self) -> tuple[str, ...]:
        """Required settings without a value: syncing stops until they are set."""
        return tuple(s.key for s in SETTINGS if s.required and not getattr(self, s.key))

    def secrets(self) -> tuple[str, ...]:
        return tuple(
            str(getattr(self, s.key)) for s in SETTINGS if s.secret and getattr(self, s.key)
        )


def _parse_one(setting: Setting, raw: Any) -> Any:
    if setting.type == "BOOLEAN":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off", ""):
            return False
        raise ValueError("on or off (true or false)")
    if setting.type == "NUMBER" and isinstance(raw, bool):
        raise ValueError("a number")
    if setting.type == "STRING" and isinstance(raw, (dict, list)):
        raise ValueError("text")
    value = raw if setting.type == "NUMBER" else str(raw).strip()
    return setting.check(value) if setting.check else value


def shown_value(value: Any) -> str:
    """A setting's value as a person reads it: text as is, lists joined, nothing as "empty"."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value) if value else "empty"
    if value in (None, ""):
        return "empty"
    return str(value)


def setting_label(key: str) -> str:
    """A setting as people find it: its name on Stash's plugin page with its key, e.g.
    'Plex URL (plex_url)' (the key is what the settings file and STASH2PLEX_<KEY> use)."""
    for setting in SETTINGS:
        if setting.key == key:
            return f"{setting.display_name} ({key})"
    if key in CONNECTION_LABELS:
        return f"{CONNECTION_LABELS[key]} ({key})"
    return key


# How the command line and the service reach Stash (not plugin settings: a plugin is given
# its connection by Stash).
CONNECTION_LABELS = {"stash_url": "Stash URL", "stash_api_key": "Stash API key"}
CONNECTION_HELP = {
    "stash_url": (
        "Stash's address, e.g. http://127.0.0.1:9999, without a login or a query. Unset: "
        "the connection Stash gave the plugin on its last hook or task (kept in the data "
        "folder), so a command line sharing the plugin's data folder needs none."
    ),
    "stash_api_key": (
        "Stash's API key (Stash: Settings > Security > API Key), when Stash asks for a login. "
        "Unset with an unset Stash URL: the key the plugin read from Stash. Never shown."
    ),
}


def build_config(values: Mapping[str, Any] | None) -> Config:
    """Validate raw settings per key.

    A bad value of most settings warns and falls back to its default; a bad value of a
    blocking setting (`plex_url`, `path_map`) is recorded in `invalid` (and warned about):
    nothing should sync until it is fixed. Messages say what is accepted in words.
    """
    parsed: dict[str, Any] = {}
    warnings: list[str] = []
    invalid: dict[str, str] = {}
    for setting in SETTINGS:
        raw = (values or {}).get(setting.key)
        if raw is None or (isinstance(raw, str) and not raw.strip() and setting.type != "BOOLEAN"):
            continue
        try:
            parsed[setting.key] = _parse_one(setting, raw)
        except (ValueError, TypeError, OverflowError) as exc:
            shown = repr(shown_value(raw))
            if setting.secret:
                shown = "***"
            elif setting.is_address:  # an address may carry the token
                shown = repr(without_credentials(shown_value(raw)))
            label = setting_label(setting.key)
            problem = f"setting {label} = {shown} is not valid: expected {exc}"
            if setting.blocking:
                invalid[setting.key] = problem
                warnings.append(f"{problem}; nothing syncs until it is fixed")
            else:
                warnings.append(f"{problem}; using the default ({shown_value(setting.default)})")
    if parsed.get("sync_rating_both_ways"):
        parsed["sync_rating"] = True  # both ways includes Stash -> Plex
    return Config(**parsed, warnings=tuple(warnings), invalid=invalid)


def unsaid_warnings(config: Config, said: set[str]) -> list[str]:
    """The config's warnings not in `said` yet, which are added to it: what a command or task
    says once, however often it reads the settings."""
    fresh = [warning for warning in config.warnings if warning not in said]
    said.update(fresh)
    return fresh
