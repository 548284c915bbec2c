"""A strict loader for a Stash plugin manifest (`<ID>.yml`), equivalent to Stash v0.30's.

Stash decodes the manifest with go-yaml v2 in strict mode into its `plugin.Config` struct
(`pkg/plugin/config.go`): an unknown key or a duplicate key anywhere makes the whole plugin fail
to load, and so does a value of the wrong shape (a mapping where a string is expected, a scalar
where a list is expected). After decoding, Stash rejects an `interface` other than raw/rpc/js and
a setting `type` other than STRING/NUMBER/BOOLEAN. Nothing else is validated: an unknown `errLog`
loads fine and simply means "error" at run time, and trigger names are never checked.

Parsing uses PyYAML's *composer* only (the node tree with line numbers, no Python objects): its
scanner and parser are, like go-yaml v2's, ports of libyaml, so both accept and reject the same
YAML 1.1 text. The typed, strict decoding from nodes into the manifest is done here, the way
go-yaml decodes into Go types: a scalar decoded into a string keeps its text exactly as written
(`30` -> "30", `true` -> "true", `1.0` -> "1.0"), and null becomes the zero value.

`validate_community_schema` adds the stricter rules of the CommunityScripts index
(`validator/plugin.schema.json`), which parses the same file as YAML 1.2.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import yaml
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "stash2plex.sandbox.manifest needs PyYAML: pip install 'stash2plex[sandbox]'"
    ) from exc

__all__ = [
    "ERR_LOG_LEVELS",
    "INTERFACES",
    "SETTING_TYPES",
    "HookConfig",
    "ManifestError",
    "PluginManifest",
    "SettingConfig",
    "TaskConfig",
    "UIConfig",
    "load_manifest",
    "validate_community_schema",
]

INTERFACES = ("raw", "rpc", "js")
SETTING_TYPES = ("STRING", "NUMBER", "BOOLEAN")
#: Level names Stash understands for `errLog` (`pkg/logger/plugin.go`); anything else means error.
ERR_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "progress", "none")

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"


class ManifestError(ValueError):
    """The manifest would not load in Stash (or fails the CommunityScripts schema).

    `problems` lists every problem found, each naming its line and the offending key.
    """

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(f"{path.name}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class TaskConfig:
    """One entry of `tasks:` (Stash's `OperationConfig`)."""

    name: str
    description: str
    exec_args: list[str]
    #: `map[string]string` in Stash: every value is the YAML text as written.
    default_args: dict[str, str]


@dataclass(frozen=True)
class HookConfig:
    """One entry of `hooks:` (Stash's `HookConfig`: an inline `OperationConfig` + triggeredBy)."""

    name: str
    description: str
    triggered_by: list[str]
    exec_args: list[str]
    default_args: dict[str, str]


@dataclass(frozen=True)
class SettingConfig:
    """One entry of `settings:`. `type` is STRING when the manifest leaves it out."""

    display_name: str
    description: str
    type: str


@dataclass(frozen=True)
class UIConfig:
    """The `ui:` block (browser-side files only; a raw plugin rarely has one)."""

    requires: list[str] = field(default_factory=list)
    javascript: list[str] = field(default_factory=list)
    css: list[str] = field(default_factory=list)
    assets: dict[str, str] = field(default_factory=dict)
    csp: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PluginManifest:
    """A plugin manifest as Stash sees it after loading."""

    #: The plugin ID: the file name without its extension (what `runPluginTask` takes).
    id: str
    #: The display name; the ID when `name:` is empty, as in Stash.
    name: str
    exec: list[str]
    #: raw | rpc | js (raw when omitted).
    interface: str
    #: `errLog` as written ("error" when omitted); see `effective_err_log`.
    err_log: str
    tasks: list[TaskConfig]
    hooks: list[HookConfig]
    settings: dict[str, SettingConfig]
    #: The manifest file.
    path: Path
    description: str | None = None
    #: Kept exactly as written: `version: 1.0` is "1.0".
    version: str | None = None
    url: str | None = None
    ui: UIConfig = field(default_factory=UIConfig)

    @property
    def plugin_dir(self) -> Path:
        """The directory holding the manifest (what `{pluginDir}` expands to)."""
        return self.path.parent

    @property
    def effective_err_log(self) -> str:
        """The level Stash applies to unprefixed stderr lines: an unknown name means error."""
        return self.err_log if self.err_log in ERR_LOG_LEVELS else "error"

    def task(self, name: str) -> TaskConfig:
        """The first task called `name` (Stash's lookup); LookupError naming the tasks otherwise."""
        for task in self.tasks:
            if task.name == name:
                return task
        names = [t.name for t in self.tasks]
        raise LookupError(f"plugin {self.id} has no task {name!r}; its tasks: {names}")

    def hooks_for(self, trigger: str) -> list[HookConfig]:
        """Every hook Stash would run for `trigger`, in manifest order."""
        return [hook for hook in self.hooks if trigger in hook.triggered_by]


# --------------------------------------------------------------------------------------------
# Typed strict decoding from PyYAML nodes, mirroring go-yaml v2 with SetStrict(true).


class _Decoder:
    """Collects every decoding problem instead of stopping at the first, like go-yaml."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    @staticmethod
    def _line(node: yaml.Node) -> int:
        return node.start_mark.line + 1

    def _is_null(self, node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG

    def _type_error(self, node: yaml.Node, go_type: str) -> None:
        if isinstance(node, yaml.MappingNode):
            what = "!!map"
        elif isinstance(node, yaml.SequenceNode):
            what = "!!seq"
        else:
            short = node.tag.rsplit(":", 1)[-1] if node.tag.startswith("tag:yaml.org") else node.tag
            what = f"!!{short} `{node.value}`"
        self.problems.append(f"line {self._line(node)}: cannot unmarshal {what} into {go_type}")

    # Leaf decoders return the decoded value, or None after recording a problem.

    def string(self, node: yaml.Node) -> str | None:
        """Go `string`: a scalar's text as written; null is ""."""
        if isinstance(node, yaml.ScalarNode):
            return "" if self._is_null(node) else node.value
        self._type_error(node, "string")
        return None

    def optional_string(self, node: yaml.Node) -> str | None:
        """Go `*string`: like `string` but null stays nil."""
        if self._is_null(node):
            return None
        return self.string(node)

    def string_list(self, node: yaml.Node) -> list[str]:
        """Go `[]string`: a sequence of scalars; null is an empty list."""
        if self._is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self._type_error(node, "[]string")
            return []
        out: list[str] = []
        for item in node.value:
            value = self.string(item)
            if value is not None:
                out.append(value)
        return out

    def string_map(self, node: yaml.Node) -> dict[str, str]:
        """Go `map[string]string`: keys and values as written; a repeated key is an error."""
        out: dict[str, str] = {}
        self._map_into(node, out, self.string, "map[string]string")
        return out

    def _map_into(
        self,
        node: yaml.Node,
        out: dict[str, Any],
        decode_value: Callable[[yaml.Node], Any],
        go_type: str,
    ) -> None:
        if self._is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self._type_error(node, go_type)
            return
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for merged in self._merge_sources(value_node):
                    self._map_into(merged, out, decode_value, go_type)
                continue
            key = self.string(key_node)
            if key is None:
                continue
            value = decode_value(value_node)
            if value is None:
                continue
            if key in out:
                # go-yaml reports the line of the value that tried to overwrite the key.
                self.problems.append(
                    f"line {self._line(value_node)}: key {key!r} already set in map"
                )
                continue
            out[key] = value

    def _merge_sources(self, node: yaml.Node) -> list[yaml.Node]:
        """The mappings a `<<:` key pulls in; earlier ones in a list take precedence."""
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and all(
            isinstance(item, yaml.MappingNode) for item in node.value
        ):
            return list(reversed(node.value))
        self.problems.append(f"line {self._line(node)}: map merge requires map or sequence of maps")
        return []

    def struct(
        self,
        node: yaml.Node,
        fields: dict[str, Callable[[yaml.Node], Any]],
        go_type: str,
        out: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """A Go struct: only `fields` are allowed, each at most once (strict mode).

        Returns the decoded fields by YAML key; None for a null node (Go's zero value/nil).
        """
        if out is None:
            if self._is_null(node):
                return None
            out = {}
        if not isinstance(node, yaml.MappingNode):
            self._type_error(node, go_type)
            return out
        done: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # go-yaml decodes merged mappings into the same struct in their own pass, so a
                # merged field may be overridden by an explicit one without a duplicate error.
                for merged in self._merge_sources(value_node):
                    self.struct(merged, fields, go_type, out)
                continue
            name = self.string(key_node)
            if name is None:
                continue
            line = self._line(key_node)
            if name not in fields:
                self.problems.append(f"line {line}: field {name} not found in type {go_type}")
                continue
            if name in done:
                self.problems.append(f"line {line}: field {name} already set in type {go_type}")
                continue
            done.add(name)
            value = fields[name](value_node)
            if value is not None:
                out[name] = value
        return out


def _compose(path: Path) -> yaml.Node | None:
    """The first YAML document's node tree (go-yaml's Decoder.Decode reads only the first)."""
    text = path.read_bytes()
    try:
        documents = yaml.compose_all(text, Loader=yaml.SafeLoader)
        return next(documents, None)
    except yaml.YAMLError as exc:
        raise ManifestError(path, [f"yaml: {exc}"]) from None


def load_manifest(path: Path | str) -> PluginManifest:
    """Load a plugin manifest exactly as strictly as Stash v0.30 does.

    Raises ManifestError (listing every problem, each naming its line and key) when Stash would
    refuse to load the plugin.
    """
    path = Path(path)
    root = _compose(path)
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL_TAG):
        raise ManifestError(path, ["empty document (Stash: EOF)"])

    d = _Decoder()

    def operation_fields() -> dict[str, Callable[[yaml.Node], Any]]:
        return {
            "name": d.string,
            "description": d.string,
            "execArgs": d.string_list,
            "defaultArgs": d.string_map,
        }

    def entry_list(go_type: str, fields: dict[str, Callable[[yaml.Node], Any]]):
        # `[]*OperationConfig` / `[]*HookConfig`: a null entry would be a nil pointer that
        # Stash dereferences later, so it is reported here rather than crashing at run time.
        def decode(node: yaml.Node) -> list[dict[str, Any]]:
            if d._is_null(node):
                return []
            if not isinstance(node, yaml.SequenceNode):
                d._type_error(node, f"[]*{go_type}")
                return []
            entries = []
            for item in node.value:
                decoded = d.struct(item, fields, go_type)
                if decoded is None:
                    d.problems.append(f"line {d._line(item)}: empty entry in a list of {go_type}")
                    continue
                entries.append(decoded)
            return entries

        return decode

    hook_fields = {**operation_fields(), "triggeredBy": d.string_list}
    setting_fields = {"displayName": d.string, "description": d.string, "type": d.string}
    csp_fields = {
        "script-src": d.string_list,
        "style-src": d.string_list,
        "connect-src": d.string_list,
    }

    def settings(node: yaml.Node) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        d._map_into(
            node,
            out,
            lambda n: d.struct(n, setting_fields, "plugin.SettingConfig") or {},
            "map[string]plugin.SettingConfig",
        )
        return out

    ui_fields = {
        "requires": d.string_list,
        "csp": lambda n: d.struct(n, csp_fields, "plugin.PluginCSP"),
        "javascript": d.string_list,
        "css": d.string_list,
        "assets": d.string_map,
    }
    top_fields: dict[str, Callable[[yaml.Node], Any]] = {
        "name": d.string,
        "description": d.optional_string,
        "url": d.optional_string,
        "version": d.optional_string,
        "interface": d.string,
        "exec": d.string_list,
        "errLog": d.string,
        "tasks": entry_list("plugin.OperationConfig", operation_fields()),
        "hooks": entry_list("plugin.HookConfig", hook_fields),
        "ui": lambda n: d.struct(n, ui_fields, "plugin.UIConfig"),
        "settings": settings,
    }
    raw = d.struct(root, top_fields, "plugin.Config") or {}

    # Stash's own checks after decoding (`Config.valid`).
    interface = raw.get("interface") or "raw"
    if interface not in INTERFACES:
        d.problems.append(f"invalid interface type {interface} (expected one of {INTERFACES})")
    for key, setting in raw.get("settings", {}).items():
        setting_type = setting.get("type", "")
        if setting_type and setting_type not in SETTING_TYPES:
            d.problems.append(
                f"invalid type {setting_type} for setting {key} (expected one of {SETTING_TYPES})"
            )
    if d.problems:
        raise ManifestError(path, d.problems)

    plugin_id = path.name[: path.name.rfind(".")] if "." in path.name else path.name
    ui = raw.get("ui") or {}
    return PluginManifest(
        id=plugin_id,
        name=raw.get("name") or plugin_id,
        exec=raw.get("exec", []),
        interface=interface,
        err_log=raw.get("errLog") or "error",
        tasks=[
            TaskConfig(
                name=t.get("name", ""),
                description=t.get("description", ""),
                exec_args=t.get("execArgs", []),
                default_args=t.get("defaultArgs", {}),
            )
            for t in raw.get("tasks", [])
        ],
        hooks=[
            HookConfig(
                name=h.get("name", ""),
                description=h.get("description", ""),
                triggered_by=h.get("triggeredBy", []),
                exec_args=h.get("execArgs", []),
                default_args=h.get("defaultArgs", {}),
            )
            for h in raw.get("hooks", [])
        ],
        settings={
            key: SettingConfig(
                display_name=s.get("displayName", ""),
                description=s.get("description", ""),
                type=s.get("type") or "STRING",
            )
            for key, s in raw.get("settings", {}).items()
        },
        path=path,
        description=raw.get("description"),
        version=raw.get("version"),
        url=raw.get("url"),
        ui=UIConfig(
            requires=ui.get("requires", []),
            javascript=ui.get("javascript", []),
            css=ui.get("css", []),
            assets=ui.get("assets", {}),
            csp=ui.get("csp") or {},
        ),
    )


# --------------------------------------------------------------------------------------------
# The CommunityScripts index schema (validator/plugin.schema.json, checked with ajv).

_COMMUNITY_VERSION = re.compile(r"^\d+(\.\d+)?(\.\d+)?$")
_COMMUNITY_ERR_LOG = ("trace", "debug", "info", "warning", "error")
_COMMUNITY_TOP = (
    "name",
    "description",
    "version",
    "url",
    "ui",
    "exec",
    "interface",
    "errLog",
    "hooks",
    "tasks",
    "settings",
)
_COMMUNITY_UI = ("css", "javascript", "requires", "assets", "csp", "settings")
_TRIGGER_OBJECTS = (
    "Scene",
    "SceneMarker",
    "Image",
    "Gallery",
    "GalleryChapter",
    "Movie",
    "Group",
    "Performer",
    "Studio",
    "Tag",
)
# The schema's enum: every object with Create/Update/Destroy, and Merge for all but GalleryChapter.
_COMMUNITY_TRIGGERS = frozenset(
    f"{obj}.{op}.Post"
    for obj in _TRIGGER_OBJECTS
    for op in ("Create", "Update", "Destroy", "Merge")
    if not (obj == "GalleryChapter" and op == "Merge")
)

# The validator reads the file with the JavaScript `yaml` package: YAML 1.2 core schema, where
# `yes`/`on` are strings but `30`, `1.5` and `true` are numbers and booleans.
_Y12_NULL = re.compile(r"^(~|null|Null|NULL|)$")
_Y12_BOOL = re.compile(r"^(true|True|TRUE|false|False|FALSE)$")
_Y12_INT = re.compile(r"^([-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_Y12_FLOAT = re.compile(
    r"^([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$"
)


def _json_type(node: yaml.Node) -> str:
    """The JSON type the CommunityScripts validator sees for `node`."""
    if isinstance(node, yaml.MappingNode):
        return "object"
    if isinstance(node, yaml.SequenceNode):
        return "array"
    if node.style in ("'", '"', "|", ">") or node.tag not in (
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:str",
        "tag:yaml.org,2002:timestamp",
    ):
        return "string"
    text = node.value
    if _Y12_NULL.match(text):
        return "null"
    if _Y12_BOOL.match(text):
        return "boolean"
    if _Y12_INT.match(text):
        return "integer"
    if _Y12_FLOAT.match(text):
        return "number"
    return "string"


def _pairs(node: yaml.MappingNode) -> list[tuple[str, yaml.Node]]:
    return [(k.value, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]


def _line(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}"


class _CommunityCheck:
    """Walks the node tree once, collecting every violation of the index schema."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def expect(self, node: yaml.Node, where: str, *types: str) -> bool:
        """Record a problem unless `node` has one of the JSON `types` (integer is a number)."""
        kind = _json_type(node)
        if kind in types or (kind == "integer" and "number" in types):
            return True
        self.problems.append(f"{_line(node)}: {where} must be {' or '.join(types)}, not {kind}")
        return False

    def mapping(self, node: yaml.Node, where: str) -> dict[str, yaml.Node] | None:
        """The keys of an object-typed node, or None (problem recorded) when it is not one."""
        if self.expect(node, where, "object") and isinstance(node, yaml.MappingNode):
            return dict(_pairs(node))
        return None

    def string_list(self, node: yaml.Node, where: str, nullable: bool = False) -> None:
        types = ("array", "null") if nullable else ("array",)
        if self.expect(node, where, *types) and isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.expect(item, f"{where}[{i}]", "string")

    def enum(self, node: yaml.Node, where: str, allowed: tuple[str, ...]) -> None:
        if self.expect(node, where, "string") and node.value not in allowed:
            self.problems.append(f"{_line(node)}: {where} {node.value!r} must be one of {allowed}")

    def required(
        self, node: yaml.Node, fields: dict[str, yaml.Node], where: str, *names: str
    ) -> None:
        for name in names:
            if name not in fields:
                self.problems.append(f"{_line(node)}: {where}.{name} is required")

    def top(self, root: yaml.MappingNode) -> None:
        fields = dict(_pairs(root))
        if "name" not in fields:
            self.problems.append("name is required")
        for key, value in _pairs(root):
            if key not in _COMMUNITY_TOP:
                self.problems.append(f"{_line(value)}: top-level key {key} is not allowed")
            elif key == "name":
                self.expect(value, "name", "string")
            elif key in ("description", "url"):
                self.expect(value, key, "string", "null")
            elif key == "version":
                self.version(value)
            elif key == "exec":
                self.string_list(value, "exec")
            elif key == "interface":
                self.enum(value, "interface", INTERFACES)
            elif key == "errLog":
                self.enum(value, "errLog", _COMMUNITY_ERR_LOG)
            elif key in ("hooks", "tasks"):
                if self.expect(value, key, "array") and isinstance(value, yaml.SequenceNode):
                    for i, entry in enumerate(value.value):
                        if key == "hooks":
                            self.hook(entry, f"hooks[{i}]")
                        else:
                            self.task(entry, f"tasks[{i}]")
            elif key == "settings":
                self.settings(value, "settings")
            elif key == "ui":
                self.ui(value)

    def version(self, node: yaml.Node) -> None:
        # A YAML 1.2 number (`version: 1.0`) passes; the pattern applies to strings only.
        if (
            self.expect(node, "version", "string", "number")
            and _json_type(node) == "string"
            and not _COMMUNITY_VERSION.match(node.value)
        ):
            self.problems.append(
                f"{_line(node)}: version {node.value!r} must match "
                f"{_COMMUNITY_VERSION.pattern} (x.y.z of integers)"
            )

    def hook(self, node: yaml.Node, where: str) -> None:
        fields = self.mapping(node, where)
        if fields is None:
            return
        self.required(node, fields, where, "name", "triggeredBy")
        if "name" in fields:
            self.expect(fields["name"], f"{where}.name", "string")
        if "description" in fields:
            self.expect(fields["description"], f"{where}.description", "string", "null")
        if "defaultArgs" in fields:
            self.expect(fields["defaultArgs"], f"{where}.defaultArgs", "object")
        triggers = fields.get("triggeredBy")
        if triggers is None:
            return
        self.string_list(triggers, f"{where}.triggeredBy")
        if isinstance(triggers, yaml.SequenceNode):
            for item in triggers.value:
                if isinstance(item, yaml.ScalarNode) and item.value not in _COMMUNITY_TRIGGERS:
                    self.problems.append(
                        f"{_line(item)}: {where}.triggeredBy {item.value!r} is not a hook trigger"
                    )

    def task(self, node: yaml.Node, where: str) -> None:
        fields = self.mapping(node, where)
        if fields is None:
            return
        self.required(node, fields, where, "name")
        if "name" in fields:
            self.expect(fields["name"], f"{where}.name", "string")
        if "description" in fields:
            self.expect(fields["description"], f"{where}.description", "string")
        # The schema declares task execArgs as an object of strings (a quirk of the schema;
        # Stash wants a list), so a task with execArgs cannot pass the index validator.
        for key in ("defaultArgs", "execArgs"):
            if key in fields:
                args = self.mapping(fields[key], f"{where}.{key}")
                for arg, value in (args or {}).items():
                    self.expect(value, f"{where}.{key}.{arg}", "string")

    def settings(self, node: yaml.Node, where: str) -> None:
        settings = self.mapping(node, where)
        for key, setting in (settings or {}).items():
            name = f"{where}.{key}"
            fields = self.mapping(setting, name)
            if fields is None:
                continue
            self.required(setting, fields, name, "displayName", "type")
            if "displayName" in fields:
                self.expect(fields["displayName"], f"{name}.displayName", "string")
            if "description" in fields:
                self.expect(fields["description"], f"{name}.description", "string", "null")
            if "type" in fields:
                self.enum(fields["type"], f"{name}.type", SETTING_TYPES)

    def ui(self, node: yaml.Node) -> None:
        fields = self.mapping(node, "ui")
        if fields is None:
            return
        if "css" not in fields and "javascript" not in fields:
            self.problems.append(f"{_line(node)}: ui must list css or javascript")
        for key, value in fields.items():
            if key not in _COMMUNITY_UI:
                self.problems.append(f"{_line(value)}: ui key {key} is not allowed")
            elif key in ("css", "javascript", "requires"):
                self.string_list(value, f"ui.{key}", nullable=True)
            elif key == "settings":
                self.settings(value, "ui.settings")


def validate_community_schema(path: Path | str) -> None:
    """Check the manifest against the CommunityScripts index rules, stricter than Stash's.

    The manifest must first load in Stash (`load_manifest`). Then, as in
    `validator/plugin.schema.json`: `name` is required; `version` matches
    `^\\d+(\\.\\d+)?(\\.\\d+)?$`; `errLog` is only trace/debug/info/warning/error; every
    setting has `displayName` and a `type`; hooks name real triggers; task `defaultArgs` values
    are strings *under YAML 1.2* (quote numbers and booleans); `ui` lists css or javascript.
    Raises ManifestError listing every problem.
    """
    path = Path(path)
    load_manifest(path)
    root = _compose(path)
    assert isinstance(root, yaml.MappingNode)  # load_manifest proved it
    check = _CommunityCheck()
    check.top(root)
    if check.problems:
        raise ManifestError(path, check.problems)
