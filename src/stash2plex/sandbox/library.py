"""The sample library: what the emulated Stash holds, and the generator of realistic ones.

Pure data and logic, no I/O. `generate_library` is deterministic for a seed and reproduces the
variety a real library throws at a sync: unicode, emoji and missing titles, multi-paragraph
details with tabs and typography, partial dates, nested studios and tags, scenes without a file
or with two, duplicate file names in different folders, scenes without a cover. `seed_plex`
puts the matching files into the Plex emulator the way Plex would see them after a scan.

With `traps=True` it also sets the situations users meet that a plain library hides: a Windows
Plex server (paths `M:\\...`, a rule written `m:/` in another case and slash), folder names that
Plex spells in NFD, Plex items a metadata agent filled (20 %, including scenes with no
performers or tags, and freshly scanned scenes with no metadata at all), two scenes whose files
Plex stacked into one item (a conflict), a scene whose two files Plex stacked (no conflict), a
five-level tag chain with a second parent, and a TV library next to the movie one.
"""

from __future__ import annotations

import math
import posixpath
import random
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from stash2plex.sandbox.plex_model import ActorState, AgentMetadata


@dataclass
class Studio:
    id: int
    name: str
    parent_id: int | None = None
    details: str | None = None
    has_image: bool = True  # False: Stash serves its SVG stand-in (`&default=true`)
    image_version: int = 1  # bumped when the image is replaced


@dataclass
class Performer:
    id: int
    name: str
    has_image: bool = True


@dataclass
class Tag:
    id: int
    name: str
    parent_ids: list[int] = field(default_factory=list)


@dataclass
class Group:
    id: int
    name: str
    synopsis: str | None = None
    has_front_image: bool = False
    front_image_version: int = 1


@dataclass
class VideoFile:
    id: int
    path: str  # the path as Stash sees it (absolute POSIX)
    size: int  # bytes
    duration: float  # seconds


@dataclass
class Scene:
    id: int
    title: str | None
    details: str | None
    date: str | None  # "YYYY", "YYYY-MM" or "YYYY-MM-DD" (Stash >= 0.30 stores partial dates)
    rating100: int | None
    studio_id: int | None
    performer_ids: list[int]
    tag_ids: list[int]
    group_ids: list[int]
    files: list[VideoFile]  # the first is the primary file
    code: str | None
    urls: list[str]
    organized: bool
    created_at: str  # RFC3339, second precision, the server's local offset (as Stash returns)
    updated_at: str
    cover_version: int | None  # None: no cover, Stash serves its SVG placeholder
    in_plex: bool = True  # False: the file exists but Plex has not scanned it yet
    # Plays and activity: Stash keeps each play's time; the resume point has no time of its own.
    play_history: list[str] = field(default_factory=list)  # RFC3339, the server's offset
    resume_time: float | None = None  # seconds
    play_duration: float = 0.0  # seconds


@dataclass
class SampleLibrary:
    studios: dict[int, Studio]
    performers: dict[int, Performer]
    tags: dict[int, Tag]
    groups: dict[int, Group]
    scenes: dict[int, Scene]
    stash_root: str
    plex_root: str
    # How Plex spells some Stash paths (e.g. in NFD), when not just the root swapped.
    plex_spellings: dict[str, str] = field(default_factory=dict)
    # Stash path of an item's first file -> what a Plex metadata agent put into that item.
    agent: dict[str, AgentMetadata] = field(default_factory=dict)
    # Stash paths of files Plex holds as one item (stacked parts), in part order.
    stacks: list[list[str]] = field(default_factory=list)
    # More Plex libraries next to the scenes' one: (title, type, locations).
    extra_sections: list[tuple[str, str, list[str]]] = field(default_factory=list)
    # The path_map rule as a user wrote it, when not "stash_root => plex_root".
    path_map_rule: str | None = None

    def plex_path(self, stash_path: str) -> str:
        """The path Plex sees for a Stash path (the stash_root prefix swapped for plex_root,
        with backslashes on a Windows Plex server)."""
        if stash_path in self.plex_spellings:
            return self.plex_spellings[stash_path]
        root = self.stash_root.rstrip("/")
        if stash_path == root or stash_path.startswith(root + "/"):
            rest = stash_path[len(root) :]
            if _windows_root(self.plex_root):
                return self.plex_root.rstrip("\\/") + rest.replace("/", "\\")
            return self.plex_root.rstrip("/") + rest
        return stash_path

    @property
    def path_map(self) -> str:
        """The project's `path_map` setting that maps this library's Stash paths to Plex's."""
        return self.path_map_rule or f"{self.stash_root} => {self.plex_root}"

    def plex_items(self) -> list[list[str]]:
        """The Stash paths of each Plex item's files (one, or a stack), in seeding order."""
        stacked = {path: stack for stack in self.stacks for path in stack}
        items: list[list[str]] = []
        seen: set[str] = set()
        for scene_id in sorted(self.scenes):
            scene = self.scenes[scene_id]
            if not scene.in_plex:
                continue
            for file in scene.files:
                if file.path in seen:
                    continue
                group = stacked.get(file.path, [file.path])
                seen.update(group)
                items.append(list(group))
        return items

    def file(self, stash_path: str) -> VideoFile:
        for scene in self.scenes.values():
            for file in scene.files:
                if file.path == stash_path:
                    return file
        raise KeyError(stash_path)


def _windows_root(path: str) -> bool:
    return len(path) >= 2 and path[1] == ":" and path[0].isalpha()


# --------------------------------------------------------------------------- vocabulary
# Parent networks first: (name, children). Names mix scripts and typography on purpose.
_STUDIO_TREE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Meridian Network", ("Meridian East", "Meridian Nord", "Méridien Québec")),
    ("Nordlicht Filmproduktion", ("Nordlicht Dokumentar", "Nordlicht Jugend")),
    ("北極星映像", ("北極星スタジオ",)),
    ("Les Films du Désert", ()),
    ("Café Noir Pictures", ("Café Noir Shorts",)),
    ("Estudio Ñandú", ()),
    ("O'Malley & Sons", ()),
    ("Studio Ōkami", ()),
    ("Blue Hour Collective", ("Blue Hour Live", "Blue Hour Archive")),
    ("Ελληνικές Ταινίες", ()),
    ("Zürich Frame Works", ()),
    ("Lighthouse Media – Archive", ()),
)


def _words(text: str) -> tuple[str, ...]:
    """A vocabulary written as one `|`-separated string (compact, and easy to extend)."""
    return tuple(part.strip() for part in text.split("|"))


_FIRST_NAMES = _words(
    "Zoë | Renée | José María | Siobhán | Łucja | Björk | Aiko | Nguyễn Thị | Ahmed | Ingrid"
    " | Chloé | Mateo | Anaïs | Søren | Dara | Yuki | Ana | Jürgen | Priya | Oğuz | Maëlle"
    " | Kwame | Ilse | Tomás | Freya | Noor | Élodie | Sven | Mia | Rafael"
)
_LAST_NAMES = _words(
    "Ångström | O'Connor | Núñez | Ní Bhriain | Wójcik | Sigurðardóttir | Tanaka | Mai | Haddad"
    " | Lindqvist | Dubois | Fernández | Kowalski | Østergaard | Moreau | Schäfer | Nakamura"
    " | Rossi | Çelik | Okafor | van der Berg | García-López | Kim | Mendes | Novák | Larsen"
    " | Ivanova | de la Cruz | Hoffmann | Sato"
)

# (parent, children). Some children share a parent, some tags have none.
_TAG_TREE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Setting", _words("Outdoor | Indoor | Beach | Forest | Rooftop | Café | Kitchen")),
    ("Lighting", _words("Golden Hour | Natural Light | Studio Lighting | Neon | Candlelight")),
    ("Weather", _words("Rain | Snow | Fog | Sunny")),
    ("Camera", _words("Handheld | Tripod | Drone Shot | POV | Slow Motion | Time-lapse")),
    ("Quality", _words("4K | HDR | 1080p | 720p | VR")),
    ("Style", _words("Black & White | Vintage | Colour Graded | Minimalist | Documentary")),
    ("Language", _words("English | Français | Deutsch | 日本語 | Español | العربية")),
    ("Mood", _words("Romantic | Playful | Calm | Energetic | Mysterious")),
)
_LOOSE_TAGS = _words(
    "Interview | Behind the Scenes | Compilation | Bonus | Remastered | Favourite | Naïve"
    " | Séance | Rock'n'Roll | Q&A | Director's Cut | Part 1 | Part 2 | Live | Music | Dance"
    " | Travel | Night | Urban | Nature | Ελλάδα | Cosplay | Retro | Summer | Winter | Autumn"
    " | Spring | Classic | Experimental | Short"
)

_GROUP_NAMES = _words(
    "Summer Series | The Lighthouse Tapes | Behind the Lens Vol. 1 | Behind the Lens Vol. 2"
    " | Été à Montréal | Nordlicht Sessions | 東京ナイト | Road Trip ’19 | The “Blue Hour” Cut"
    " | Winter Diaries | Café Stories | Archive Box #3 | Coastline | After Dark – Season 2"
)

_TITLE_WORDS = _words(
    "Morning | Light | Harbour | Echoes | Summer | Rain | Window | Quiet | Road | City | Garden"
    " | Night | Letters | Blue | Dance | River | Secrets | Coffee | Island | Mirror | Winter"
    " | Stranger | Balcony | Memory | Velvet | Storm | Orchard | Neon"
)
_ACCENTED_TITLES = _words(
    "Crème brûlée à minuit | Straße nach Süden | Mañana en Sevilla | Ñoquis y café"
    " | Smörgåsbord för två | Pavlova på tåget | Noël à Besançon | Zażółć gęślą jaźń"
    " | Fjörður í haust | Ça ira, Élise"
)
_CJK_TITLES = _words(
    "東京の夜 | 夏の終わり | 雨の日の喫茶店 | 북극성 아래에서 | 春天的故事 | 月光と猫 | 京都散歩"
    " | 海辺のアトリエ"
)
_RTL_TITLES = _words("ليلة في القاهرة | שלום ירושלים | نسيم البحر | אור הבוקר | حديقة الياسمين")
_EMOJI_TITLES = _words(
    "Beach day 🌊☀️ | Midnight snack 🍕🌙 | Road trip 🚗💨 | Birthday 🎂🎉 | Rainy mood ☔"
    " | Fire & ice 🔥❄️ | Cat café 🐈☕ | Family: 👩‍👩‍👧‍👦 weekend"
)
_TYPOGRAPHY_TITLES = _words(
    "“Don’t Look Back” — Part II | Wait… What? | ‘Til Dawn – Extended | The «Real» Story"
    " | „Nacht“ und Nebel… | It’s 9–5 — “Overtime” | Rock ’n’ Roll — Live (1/2)"
)

_SENTENCES = _words(
    "The light shifts slowly across the harbour as the day begins."
    " | Filmed over three days on location, mostly with natural light."
    " | She said, “We’ll do one more take — just one.”"
    " | A quiet afternoon… until the rain arrives."
    " | Shot in 4K and colour graded for a warm, vintage look."
    " | Das Team drehte bei −5 °C am Ufer des Sees."
    " | Une soirée d’été à Montréal, entre amis."
    " | 撮影は京都の小さな喫茶店で行われました。"
    " | Nothing here is staged – or is it?"
    " | The soundtrack was recorded live in a single session."
    " | Some scenes were cut for time; see the bonus reel."
    " | Director’s note: “Less is more.”"
    " | Rehearsal footage follows the main feature."
    " | Jalapeño, piñata and façade walk into a bar."
    " | It rained for 40 minutes straight—perfect for the last shot."
)
_CREDIT_ROLES = _words("Camera | Sound | Editing | Grading | Music")

_EXTENSIONS = _words("mp4 | mp4 | mp4 | mkv | mkv | mov | m4v | webm | avi | wmv")
_CAMERA_DIRS = _words("Camera A | Camera B | Phone | GoPro | Drone")

# The variety that must exist whenever there are at least this many scenes.
VARIETY_MINIMUM = 20
TRAPS_MINIMUM = 40
TRAP_PLEX_ROOT = "M:\\"
# The rule a user writes for it: another case, the other slash (Windows ignores both).
TRAP_PATH_MAP = "/data/stash => m:/"
AGENT_RATIO = 0.2
# Root > ... > leaf, five levels; the leaf has a second parent elsewhere.
DEEP_TAG_CHAIN = ("Catalogue", "Fiction", "Speculative", "Science Fiction", "Cyberpunk")
DEEP_TAG_SECOND_PARENT = "Style"
UNICODE_FOLDER = "Ünïcode Földer"
TV_SECTION = ("Stash Series", "show")

# What metadata agents find: a film's title, tagline-like summary, studio, genres and cast.
_AGENT_TITLES = _words(
    "The Long Harbour | A Quiet Departure | Northern Lights Over Oslo | The Glass Orchard"
    " | Midnight in Lisbon | Paper Boats | The Last Tram | Salt and Honey | Hidden Valley"
    " | The Cartographer | Winter Garden | A Room Upstairs | Signal Lost | The Brass Key"
)
_AGENT_STUDIOS = _words(
    "Universal Pictures | Studio Canal | Gaumont | A24 | Toho | Constantin Film | Pathé"
)
_AGENT_GENRES = _words(
    "Drama | Comedy | Thriller | Romance | Documentary | Mystery | Adventure | Family"
)
_AGENT_CAST = _words(
    "Jane Marlow | Tomasz Kral | Amélie Roux | Kenji Mori | Sara Lind | Peter Holm"
    " | Ines Vidal | Marco Bellini | Ruth Abebe | Olaf Berg | Hana Sato | Luis Ortega"
)
_AGENT_ROLES = _words("Herself | The Captain | Anna | Dr. Weiss | Narrator | The Stranger")


# --------------------------------------------------------------------------- generator
def generate_library(
    n_scenes: int,
    *,
    seed: int = 0,
    stash_root: str = "/data/stash",
    plex_root: str | None = None,
    not_in_plex_ratio: float = 0.0,
    now: str = "2025-06-01T12:00:00+10:00",
    traps: bool = False,
) -> SampleLibrary:
    """A deterministic sample library of `n_scenes` scenes (ids 1..n_scenes).

    With `n_scenes >= 20` every kind of variety is guaranteed to be present (see the module
    docstring); `not_in_plex_ratio` of the scenes with files are marked as not yet in Plex.
    Timestamps lie before `now` and carry its UTC offset, as a Stash server in that zone writes.
    `traps` (from 40 scenes) adds the situations listed in the module docstring; Plex is then a
    Windows server at `M:\\` unless `plex_root` says otherwise.
    """
    if n_scenes < 0:
        raise ValueError("n_scenes must not be negative")
    if not 0.0 <= not_in_plex_ratio <= 1.0:
        raise ValueError("not_in_plex_ratio must be between 0 and 1")
    rng = random.Random(f"stash2plex-library:{seed}")
    now_dt = datetime.fromisoformat(now.replace("Z", "+00:00"))
    if now_dt.tzinfo is None:
        raise ValueError("now must carry a UTC offset")
    stash_root = stash_root.rstrip("/") or "/"
    if plex_root is None:
        plex_root = TRAP_PLEX_ROOT if traps else "/plex/media"

    studios = _make_studios()
    performers = _make_performers(rng, max(24, n_scenes // 3))
    tags = _make_tags()
    groups = {
        i: Group(i, name, _group_synopsis(name), has_front_image=i % 2 == 1)
        for i, name in enumerate(_GROUP_NAMES, start=1)
    }

    builder = _SceneBuilder(rng, studios, performers, tags, groups, stash_root, now_dt)
    # A Windows Plex shares a case-insensitive disk with Stash: no two names differ in case only.
    builder.fold_case = _windows_root(plex_root)
    scenes = {i: builder.random_scene(i) for i in range(1, n_scenes + 1)}
    if n_scenes >= VARIETY_MINIMUM:
        builder.force_variety(scenes)
    builder.assign_files(scenes)
    if n_scenes >= VARIETY_MINIMUM:
        builder.force_size_spread(scenes)
    library = SampleLibrary(studios, performers, tags, groups, scenes, stash_root, plex_root)
    if traps:
        if n_scenes < TRAPS_MINIMUM:
            raise ValueError(f"traps need at least {TRAPS_MINIMUM} scenes")
        _Traps(random.Random(f"stash2plex-traps:{seed}"), library, builder).set_all()
    _mark_not_in_plex(rng, scenes, not_in_plex_ratio, library)
    return library


def _make_studios() -> dict[int, Studio]:
    studios: dict[int, Studio] = {}
    for parent_name, children in _STUDIO_TREE:
        parent = Studio(len(studios) + 1, parent_name, details=_studio_details(parent_name))
        studios[parent.id] = parent
        for child_name in children:
            child = Studio(len(studios) + 1, child_name, parent.id)
            studios[child.id] = child
    return studios


def _studio_details(name: str) -> str:
    # Parent networks describe themselves (two paragraphs, typography kept); labels do not.
    return f"{name} — an independent network.\n\nFounded by film-makers; “small crews” only."


def _group_synopsis(name: str) -> str | None:
    return None if len(name) % 3 == 0 else f"“{name}”: a series in several parts.\nPart one…"


def _make_performers(rng: random.Random, count: int) -> dict[int, Performer]:
    names: list[str] = []
    seen: set[str] = set()
    pairs = [(f, last) for f in _FIRST_NAMES for last in _LAST_NAMES]
    rng.shuffle(pairs)
    for first, last in pairs:
        if len(names) == count:
            break
        name = f"{first} {last}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    # Past the name space (huge libraries), disambiguate like users do.
    while len(names) < count:
        names.append(f"{names[len(names) % len(pairs)]} ({len(names) // len(pairs) + 1})")
    performers = {
        i: Performer(i, name, has_image=rng.random() > 0.2) for i, name in enumerate(names, start=1)
    }
    if performers and all(p.has_image for p in performers.values()):
        performers[rng.randint(1, len(performers))].has_image = False  # always one without a photo
    return performers


def _make_tags() -> dict[int, Tag]:
    tags: dict[int, Tag] = {}
    for parent_name, children in _TAG_TREE:
        parent = Tag(len(tags) + 1, parent_name)
        tags[parent.id] = parent
        for child_name in children:
            child = Tag(len(tags) + 1, child_name, [parent.id])
            tags[child.id] = child
    for name in _LOOSE_TAGS:
        tag = Tag(len(tags) + 1, name)
        tags[tag.id] = tag
    # A tag with two parents: Stash's tag hierarchy is a graph, not a tree.
    by_name = {t.name: t for t in tags.values()}
    by_name["Night"].parent_ids = [by_name["Setting"].id, by_name["Mood"].id]
    return tags


class _SceneBuilder:
    def __init__(
        self,
        rng: random.Random,
        studios: dict[int, Studio],
        performers: dict[int, Performer],
        tags: dict[int, Tag],
        groups: dict[int, Group],
        stash_root: str,
        now: datetime,
    ) -> None:
        self.rng = rng
        self.studios = studios
        self.performers = performers
        self.tags = tags
        self.groups = groups
        self.stash_root = stash_root
        self.now = now
        self.next_file_id = 1
        self.used_paths: set[str] = set()
        self.fold_case = False
        # Per scene: how many files (0, 1 or 2) and whether it joins a duplicate-basename pair.
        self.file_plan: dict[int, int] = {}
        self.duplicate_basename: set[int] = set()
        self._keys: dict[int, list[int]] = {}

    # ----------------------------------------------------------------- random draws
    def random_scene(self, scene_id: int) -> Scene:
        rng = self.rng
        created = self.now - timedelta(seconds=rng.randint(3600, 3 * 365 * 86400))
        updated = created + timedelta(
            seconds=rng.randint(0, int((self.now - created).total_seconds()))
        )
        roll = rng.random()
        self.file_plan[scene_id] = 0 if roll < 0.02 else 2 if roll < 0.06 else 1
        if rng.random() < 0.03:
            self.duplicate_basename.add(scene_id)
        return Scene(
            id=scene_id,
            title=self.random_title(),
            details=self.random_details(),
            date=self.random_date(),
            rating100=None if rng.random() < 0.4 else rng.randint(1, 100),
            studio_id=None if rng.random() < 0.15 else self.random_ids(self.studios, 1)[0],
            performer_ids=self.random_ids(self.performers, self.random_count(8, 2.0)),
            tag_ids=self.random_ids(self.tags, self.random_count(30, 6.0)),
            group_ids=self.random_ids(self.groups, rng.choices((0, 1, 2), (70, 25, 5))[0]),
            files=[],
            code=None
            if rng.random() < 0.6
            else f"{rng.choice('ABCDEFKMSX')}{rng.choice('ABDHKT')}-{rng.randint(1, 999):03d}",
            urls=self.random_urls(scene_id),
            organized=rng.random() < 0.5,
            created_at=format_rfc3339(created),
            updated_at=format_rfc3339(updated),
            cover_version=None if rng.random() < 0.08 else rng.choices((1, 2, 3), (80, 15, 5))[0],
        )

    def random_count(self, maximum: int, mean: float) -> int:
        # Mostly small, with a long tail up to the maximum.
        return min(maximum, int(self.rng.expovariate(1 / mean)))

    def random_ids(self, pool: dict[int, Any], count: int) -> list[int]:
        keys = self._keys.get(id(pool))
        if keys is None:  # sampling from a cached key list keeps large libraries fast
            keys = self._keys[id(pool)] = list(pool)
        return sorted(self.rng.sample(keys, min(count, len(keys))))

    def random_title(self) -> str | None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            return None
        if roll < 0.12:
            return rng.choice(_ACCENTED_TITLES)
        if roll < 0.17:
            return rng.choice(_CJK_TITLES)
        if roll < 0.20:
            return rng.choice(_RTL_TITLES)
        if roll < 0.24:
            return rng.choice(_EMOJI_TITLES)
        if roll < 0.30:
            return rng.choice(_TYPOGRAPHY_TITLES)
        words = rng.sample(_TITLE_WORDS, rng.randint(1, 4))
        return " ".join(words).title() if rng.random() < 0.7 else " ".join(words).lower()

    def random_details(self) -> str | None:
        rng = self.rng
        if rng.random() < 0.15:
            return None
        paragraphs = [
            " ".join(rng.sample(_SENTENCES, rng.randint(1, 3))) for _ in range(rng.randint(1, 4))
        ]
        if rng.random() < 0.3:
            paragraphs[0] = paragraphs[0].replace(". ", ".\n", 1)  # a single line break
        if rng.random() < 0.25:
            paragraphs.append(self.credits())
        return "\n\n".join(paragraphs)

    def credits(self) -> str:
        roles = self.rng.sample(_CREDIT_ROLES, 2)
        people = self.rng.sample(list(self.performers.values()), 2)
        return "Credits:\n" + "\n".join(
            f"\t{role} — {person.name}" for role, person in zip(roles, people, strict=True)
        )

    def random_date(self) -> str | None:
        rng = self.rng
        year = rng.randint(1998, self.now.year)
        month = rng.randint(1, 12)
        day = rng.randint(1, 28)
        return rng.choices(
            (f"{year:04d}-{month:02d}-{day:02d}", f"{year:04d}-{month:02d}", f"{year:04d}", None),
            (65, 10, 10, 15),
        )[0]

    def random_urls(self, scene_id: int) -> list[str]:
        count = self.rng.choices((0, 1, 2, 3), (40, 40, 15, 5))[0]
        hosts = (
            "https://example.com/scenes/",
            "https://video.example.org/v/",
            "https://example.net/watch?id=",
        )
        return [f"{hosts[i]}{scene_id}" for i in range(count)]

    # ----------------------------------------------------------------- guaranteed variety
    def force_variety(self, scenes: dict[int, Scene]) -> None:
        """Put every required kind of value on some scene, each attribute independently."""
        ids = sorted(scenes)

        def pick(count: int) -> list[Scene]:
            # A fresh deterministic order per attribute, so forced values spread out.
            order = ids[:]
            self.rng.shuffle(order)
            return [scenes[i] for i in order[:count]]

        titles = (
            None,
            self.rng.choice(_ACCENTED_TITLES),
            self.rng.choice(_CJK_TITLES),
            self.rng.choice(_RTL_TITLES),
            self.rng.choice(_EMOJI_TITLES),
            self.rng.choice(_TYPOGRAPHY_TITLES),
        )
        for scene, title in zip(pick(len(titles)), titles, strict=True):
            scene.title = title

        no_details, tabbed = pick(2)
        no_details.details = None
        tabbed.details = (
            f"{_SENTENCES[2]} {_SENTENCES[3]}\n{_SENTENCES[8]}\n\n{_SENTENCES[4]}"
            f"\n\n{self.credits()}"
        )

        for scene, date in zip(pick(4), ("2019-07-14", "2021-03", "2008", None), strict=True):
            scene.date = date
        for scene, rating in zip(pick(3), (None, 1, 100), strict=True):
            scene.rating100 = rating

        few, many, featured = pick(3)
        few.performer_ids = []
        many.performer_ids = self.random_ids(self.performers, 8)
        without_photo = next(p.id for p in self.performers.values() if not p.has_image)
        if without_photo not in featured.performer_ids:
            featured.performer_ids = sorted([*featured.performer_ids[:7], without_photo])

        untagged, heavily_tagged, child_tagged = pick(3)
        untagged.tag_ids = []
        heavily_tagged.tag_ids = self.random_ids(self.tags, 30)
        child = next(t.id for t in self.tags.values() if t.parent_ids)
        if child not in child_tagged.tag_ids:
            child_tagged.tag_ids = sorted([*child_tagged.tag_ids[:29], child])

        no_studio, child_studio, parent_studio = pick(3)
        no_studio.studio_id = None
        child_studio.studio_id = next(s.id for s in self.studios.values() if s.parent_id)
        parent_studio.studio_id = next(s.id for s in self.studios.values() if s.parent_id is None)

        for scene, count in zip(pick(3), (0, 1, 2), strict=True):
            scene.group_ids = self.random_ids(self.groups, count)

        no_cover, changed_cover = pick(2)
        no_cover.cover_version = None
        changed_cover.cover_version = 2

        file_scenes = pick(6)
        for scene in file_scenes[:2]:
            self.file_plan[scene.id] = 0
        for scene in file_scenes[2:4]:
            self.file_plan[scene.id] = 2
        for scene in file_scenes[4:6]:
            self.file_plan[scene.id] = 1
            self.duplicate_basename.add(scene.id)

    # ----------------------------------------------------------------- files
    def assign_files(self, scenes: dict[int, Scene]) -> None:
        # Duplicate basenames come in groups: the same camera file name, another folder.
        dup_ids = [i for i in sorted(self.duplicate_basename) if self.file_plan.get(i, 0) >= 1]
        shared_names: dict[int, str] = {}
        for index in range(0, len(dup_ids), 2):
            name = f"clip{self.rng.randint(1, 99):02d}.{self.rng.choice(('mp4', 'MOV'))}"
            for scene_id in dup_ids[index : index + 2]:
                shared_names[scene_id] = name
        for scene_id in sorted(scenes):
            scene = scenes[scene_id]
            count = self.file_plan.get(scene_id, 1)
            if count == 0:
                continue
            if scene_id in shared_names:
                folder = posixpath.join(
                    self.stash_root,
                    self.rng.choice(_CAMERA_DIRS),
                    f"{self.rng.randint(2015, self.now.year)}-{self.rng.randint(1, 12):02d}"
                    f"-{self.rng.randint(1, 28):02d}",
                    f"take-{scene_id}",
                )
                primary = self.new_file(posixpath.join(folder, shared_names[scene_id]))
            else:
                primary = self.new_file(self.random_path(scene))
            scene.files.append(primary)
            if count == 2:
                # Stash groups files with the same content into one scene: typically a copy
                # (re-encoded, so another size) kept in a backup tree with the same name.
                relative = posixpath.relpath(primary.path, self.stash_root)
                scene.files.append(
                    self.new_file(posixpath.join(self.stash_root, "Backup", relative))
                )

    def force_size_spread(self, scenes: dict[int, Scene]) -> None:
        """At least one file under 1 GB and one over (log-uniform sizes almost always do)."""
        files = [f for i in sorted(scenes) for f in scenes[i].files]
        if files and all(f.size >= 1_000_000_000 for f in files):
            files[0].size = self.rng.randint(200_000_000, 900_000_000)
        if len(files) > 1 and all(f.size < 1_000_000_000 for f in files):
            files[-1].size = self.rng.randint(1_500_000_000, 6_000_000_000)

    def random_path(self, scene: Scene) -> str:
        rng = self.rng
        ext = rng.choice(_EXTENSIONS)
        studio = self.studios.get(scene.studio_id) if scene.studio_id else None
        year = (scene.date or str(rng.randint(2010, self.now.year)))[:4]
        style = rng.random()
        if studio is not None and style < 0.6:
            parent = self.studios.get(studio.parent_id) if studio.parent_id else None
            parts = [parent.name, studio.name] if parent else [studio.name]
            title = _safe_name(scene.title) or f"{studio.name} {scene.id}"
            resolution = rng.choice(("1080p", "2160p", "720p", "480p"))
            name = f"{title} [{resolution}].{ext}"
            return posixpath.join(self.stash_root, *parts, year, name)
        if style < 0.8:
            stamp = f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            clock = f"{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}"
            name = f"VID_{stamp}_{clock}.{ext}"
            return posixpath.join(self.stash_root, "Unsorted", "Phone Uploads", year, name)
        title = _safe_name(scene.title) or f"untitled {scene.id}"
        folder = rng.choice(("Projects", "Archive/Old Drive", "Downloads/Incoming", "Été 2019"))
        return posixpath.join(self.stash_root, *folder.split("/"), f"{title}.{ext}")

    def _used_key(self, path: str) -> str:
        return path.casefold() if self.fold_case else path

    def new_file(self, path: str) -> VideoFile:
        base, ext = posixpath.splitext(path)
        candidate = path
        copy = 2
        while self._used_key(candidate) in self.used_paths:
            candidate = f"{base} ({copy}){ext}"
            copy += 1
        self.used_paths.add(self._used_key(candidate))
        file = VideoFile(
            id=self.next_file_id,
            path=candidate,
            # Log-uniform: as many clips of a few hundred MB as multi-GB features.
            size=int(math.exp(self.rng.uniform(math.log(150e6), math.log(8e9)))),
            duration=round(self.rng.uniform(45.0, 7200.0), 3),
        )
        self.next_file_id += 1
        return file


def _mark_not_in_plex(
    rng: random.Random, scenes: dict[int, Scene], ratio: float, library: SampleLibrary
) -> None:
    trapped = {path for stack in library.stacks for path in stack} | set(library.agent)
    with_files = [s for s in scenes.values() if s.files and not {f.path for f in s.files} & trapped]
    count = round(len(with_files) * ratio)
    if ratio > 0 and with_files:
        count = max(1, count)
    for scene in rng.sample(with_files, count):
        scene.in_plex = False


def _safe_name(title: str | None) -> str:
    """A title as people put it in a file name: no slashes, no control characters."""
    if not title:
        return ""
    cleaned = "".join(" " if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in title)
    return " ".join(cleaned.split())[:80]


def format_rfc3339(moment: datetime) -> str:
    """RFC3339 at second precision the way Go formats it (`Z` for UTC)."""
    text = moment.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# --------------------------------------------------------------------------- traps
class _Traps:
    """Sets the situations of the module docstring on a generated library (in place)."""

    def __init__(self, rng: random.Random, library: SampleLibrary, builder: _SceneBuilder):
        self.rng = rng
        self.library = library
        self.builder = builder
        self.used: set[int] = set()  # scenes already given a trap

    def set_all(self) -> None:
        library = self.library
        library.path_map_rule = (
            TRAP_PATH_MAP
            if library.plex_root == TRAP_PLEX_ROOT and library.stash_root == "/data/stash"
            else None
        )
        library.extra_sections.append(
            (TV_SECTION[0], TV_SECTION[1], [_join_root(library.plex_root, "Series")])
        )
        self.deep_tags()
        fresh = self.fresh_scenes()
        self.unicode_folders()
        self.stacked_conflicts()
        self.stacked_own_parts()
        self.agent_items(fresh)

    def pick(self, count: int, test: Any = lambda s: True) -> list[Scene]:
        scenes = [
            s
            for s in self.library.scenes.values()
            if s.id not in self.used and len(s.files) == 1 and test(s)
        ]
        chosen = self.rng.sample(scenes, min(count, len(scenes)))
        self.used.update(s.id for s in chosen)
        return sorted(chosen, key=lambda s: s.id)

    def share(self, ratio: float, minimum: int) -> int:
        return max(minimum, round(len(self.library.scenes) * ratio))

    def deep_tags(self) -> None:
        tags = self.library.tags
        by_name = {t.name: t for t in tags.values()}
        parent: Tag | None = None
        chain = []
        for name in DEEP_TAG_CHAIN:
            tag = Tag(len(tags) + 1, name, [parent.id] if parent else [])
            tags[tag.id] = tag
            chain.append(tag)
            parent = tag
        chain[-1].parent_ids.append(by_name[DEEP_TAG_SECOND_PARENT].id)
        # Scenes showing the leaf, an inner level, and the leaf among other tags.
        for scene in self.rng.sample(list(self.library.scenes.values()), self.share(0.02, 3)):
            scene.tag_ids = [*scene.tag_ids[:5], chain[-1].id]
        for scene in self.rng.sample(list(self.library.scenes.values()), 2):
            if chain[2].id not in scene.tag_ids:
                scene.tag_ids = [chain[2].id, *scene.tag_ids[:5]]

    def fresh_scenes(self) -> list[Scene]:
        """Just scanned: no metadata of its own (its Plex item is agent-filled)."""
        scenes = self.pick(self.share(0.02, 2))
        for scene in scenes:
            scene.title = scene.details = scene.date = scene.code = None
            scene.studio_id = None
            scene.performer_ids, scene.tag_ids, scene.group_ids, scene.urls = [], [], [], []
            scene.rating100 = None
            scene.organized = False
        return scenes

    def unicode_folders(self) -> None:
        """Stash stores the names in NFC; Plex (a Mac or SMB share behind it) reports NFD."""
        library = self.library
        for number, scene in enumerate(self.pick(self.share(0.01, 2)), start=1):
            file = scene.files[0]
            ext = posixpath.splitext(file.path)[1]
            name = f"Café – Ωmega {number}{ext}"
            file.path = posixpath.join(library.stash_root, UNICODE_FOLDER, name)
            plain = SampleLibrary(  # the root swap alone, then the Mac's normal form
                {}, {}, {}, {}, {}, library.stash_root, library.plex_root
            ).plex_path(file.path)
            library.plex_spellings[file.path] = unicodedata.normalize("NFD", plain)

    def stacked_conflicts(self) -> None:
        """Two scenes' files named `- part1`/`- part2` in one folder: Plex stacks them."""
        library = self.library
        pairs = self.share(0.005, 1)
        scenes = self.pick(2 * pairs, lambda s: s.title is not None)
        for index in range(0, len(scenes) - 1, 2):
            first, second = scenes[index], scenes[index + 1]
            name = f"Stacked Feature {first.id}"
            folder = posixpath.join(library.stash_root, "Features", name)
            ext = posixpath.splitext(first.files[0].path)[1] or ".mp4"
            first.files[0].path = posixpath.join(folder, f"{name} - part1{ext}")
            second.files[0].path = posixpath.join(folder, f"{name} - part2{ext}")
            library.stacks.append([first.files[0].path, second.files[0].path])

    def stacked_own_parts(self) -> None:
        """A scene whose two files are `- pt1`/`- pt2` in one folder: one item, no conflict."""
        library = self.library
        candidates = [
            s for s in library.scenes.values() if len(s.files) == 2 and s.id not in self.used
        ]
        if not candidates:
            return
        scene = self.rng.choice(sorted(candidates, key=lambda s: s.id))
        self.used.add(scene.id)
        name = f"Two Reels {scene.id}"
        folder = posixpath.join(library.stash_root, "Features", name)
        for number, file in enumerate(scene.files, start=1):
            ext = posixpath.splitext(file.path)[1] or ".mp4"
            file.path = posixpath.join(folder, f"{name} - pt{number}{ext}")
        library.stacks.append([f.path for f in scene.files])

    def agent_items(self, fresh: list[Scene]) -> None:
        """A metadata agent filled AGENT_RATIO of the Plex items: every fresh scene's, some
        whose scene has no performers or no tags, and others at random."""
        library = self.library
        items = library.plex_items()
        wanted = max(len(fresh), round(len(items) * AGENT_RATIO))
        owner = {f.path: s for s in library.scenes.values() for f in s.files}
        chosen: list[str] = [s.files[0].path for s in fresh]

        def add(paths: list[str], count: int) -> None:
            for path in paths:
                if count <= 0 or len(chosen) >= wanted:
                    return
                if path not in chosen:
                    chosen.append(path)
                    count -= 1

        firsts = [item[0] for item in items]
        plain = [p for p in firsts if not any(p in stack for stack in library.stacks)]
        no_performers = [p for p in plain if not owner[p].performer_ids and owner[p].title]
        no_tags = [p for p in plain if not owner[p].tag_ids and owner[p].title]
        add(self.rng.sample(no_performers, len(no_performers)), 3)
        add(self.rng.sample(no_tags, len(no_tags)), 3)
        add(self.rng.sample(firsts, len(firsts)), len(firsts))
        for path in chosen:
            library.agent[path] = self.agent_metadata()

    def agent_metadata(self) -> AgentMetadata:
        rng = self.rng
        year = rng.randint(1960, 2024)
        cast = rng.sample(_AGENT_CAST, rng.choice((2, 4, 4, 5)))
        return AgentMetadata(
            title=rng.choice(_AGENT_TITLES),
            summary=" ".join(rng.sample(_SENTENCES, 2)),
            studio=rng.choice(_AGENT_STUDIOS),
            originally_available_at=f"{year:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            tagline=rng.choice(("", "Some journeys never end.", "Based on a true story.")),
            genres=tuple(rng.sample(_AGENT_GENRES, rng.randint(1, 4))),
            actors=tuple(
                ActorState(name, rng.choice(_AGENT_ROLES), f"https://image.example.org/{i}.jpg")
                for i, name in enumerate(cast)
            ),
            directors=(rng.choice(_AGENT_CAST),),
            countries=(rng.choice(("France", "Japan", "Norway", "United States of America")),),
            guid=f"plex://movie/{rng.getrandbits(96):024x}",
        )


def _join_root(root: str, name: str) -> str:
    if _windows_root(root):
        return root.rstrip("\\/") + "\\" + name
    return root.rstrip("/") + "/" + name


# --------------------------------------------------------------------------- Plex seeding
class PlexSeedTarget(Protocol):
    """The part of the Plex emulator that `seed_plex` uses."""

    def add_section(self, title: str, locations: list[str], type: str = "movie") -> int: ...

    def add_item(
        self,
        section_id: int,
        files: str | list[str],
        *,
        sizes: int | list[int] | None = None,
        title: str | None = None,
        duration_ms: int = 600_000,
        agent: AgentMetadata | None = None,
        stacked: bool = False,
    ) -> int: ...

    def add_scannable_file(self, section_id: int, path: str, size: int = 1_000_000) -> None: ...


def seed_plex(
    plex: PlexSeedTarget, library: SampleLibrary, *, section_title: str = "Stash Scenes"
) -> int:
    """Put the library's files into a Plex emulator as a fresh scan would; returns the section id.

    One movie section at `plex_root`. Each file of a scene that is in Plex becomes its own
    unmatched item titled with the file's stem (what Plex shows for a personal video it could
    not match), except files Plex stacked (one item, several parts) and items a metadata agent
    filled; files of scenes not yet in Plex are only scannable, so a section refresh finds
    them. Scenes without files have nothing in Plex. Extra libraries (a TV one) are added after.
    """
    section_id = plex.add_section(section_title, [library.plex_root])
    # One lookup table, not a scan of every scene per file: seeding stays linear at 100k.
    by_path = {f.path: f for s in library.scenes.values() for f in s.files}
    for paths in library.plex_items():
        files = [by_path[p] for p in paths]
        plex_paths = [library.plex_path(p) for p in paths]
        agent = library.agent.get(paths[0])
        stem = posixpath.splitext(posixpath.basename(plex_paths[0].replace("\\", "/")))[0]
        options: dict[str, Any] = {"duration_ms": round(files[0].duration * 1000)}
        if agent is not None:
            options["agent"] = agent
        else:
            # A stacked item is named after the stem its parts share.
            options["title"] = _STACK_SUFFIX.sub("", stem) if len(paths) > 1 else stem
        if len(paths) == 1:
            plex.add_item(section_id, plex_paths[0], sizes=files[0].size, **options)
        else:
            sizes = [f.size for f in files]
            plex.add_item(section_id, plex_paths, sizes=sizes, stacked=True, **options)
    for scene_id in sorted(library.scenes):
        scene = library.scenes[scene_id]
        if not scene.in_plex:
            for file in scene.files:
                plex.add_scannable_file(section_id, library.plex_path(file.path), size=file.size)
    for title, section_type, locations in library.extra_sections:
        plex.add_section(title, locations, section_type)
    return section_id


_STACK_SUFFIX = re.compile(r"\s*-\s*(?:part|pt|cd|disc)\s*\d+$", re.IGNORECASE)
