"""The sample-library generator: deterministic, varied, consistent; and seeding Plex from it."""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections import Counter
from datetime import datetime

import pytest

from stash2plex.sandbox.library import SampleLibrary, generate_library, seed_plex

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}([+-]\d{2}:\d{2}|Z)$")


def _has_script(text: str, *names: str) -> bool:
    return any(any(n in unicodedata.name(ch, "") for n in names) for ch in text)


def _is_emoji(ch: str) -> bool:
    return ord(ch) >= 0x1F300 or 0x2600 <= ord(ch) <= 0x27BF


def variety_report(library: SampleLibrary) -> dict[str, bool]:
    """Which kinds of realistic variety the library holds."""
    scenes = list(library.scenes.values())
    titles = [s.title for s in scenes if s.title]
    details = [s.details for s in scenes if s.details]
    files = [f for s in scenes for f in s.files]
    by_basename: dict[str, list] = {}
    for f in files:
        by_basename.setdefault(posixpath.basename(f.path), []).append(f)
    duplicates = [fs for fs in by_basename.values() if len(fs) > 1]
    tags_with_parent = {t.id for t in library.tags.values() if t.parent_ids}
    child_studios = {s.id for s in library.studios.values() if s.parent_id}
    no_photo = {p.id for p in library.performers.values() if not p.has_image}
    return {
        "title None": any(s.title is None for s in scenes),
        "accented title": any(
            any(ord(ch) > 127 and _has_script(ch, "LATIN") for ch in t) for t in titles
        ),
        "CJK title": any(_has_script(t, "CJK", "HIRAGANA", "KATAKANA", "HANGUL") for t in titles),
        "RTL title": any(_has_script(t, "ARABIC", "HEBREW") for t in titles),
        "emoji title": any(any(_is_emoji(ch) for ch in t) for t in titles),
        "typography title": any(any(ch in t for ch in "“”‘’—–…«»„") for t in titles),
        "details None": any(s.details is None for s in scenes),
        "multi-paragraph details": any("\n\n" in d for d in details),
        "details with tab": any("\t" in d and "\n" in d for d in details),
        "typography details": any(any(ch in d for ch in "“”’—…") for d in details),
        "0 performers": any(not s.performer_ids for s in scenes),
        "8 performers": any(len(s.performer_ids) == 8 for s in scenes),
        "performer without photo": any(set(s.performer_ids) & no_photo for s in scenes),
        "0 tags": any(not s.tag_ids for s in scenes),
        "30 tags": any(len(s.tag_ids) == 30 for s in scenes),
        "tag with parent": any(set(s.tag_ids) & tags_with_parent for s in scenes),
        "no studio": any(s.studio_id is None for s in scenes),
        "child studio": any(s.studio_id in child_studios for s in scenes),
        "full date": any(s.date and len(s.date) == 10 for s in scenes),
        "YYYY-MM date": any(s.date and len(s.date) == 7 for s in scenes),
        "YYYY date": any(s.date and len(s.date) == 4 for s in scenes),
        "no date": any(s.date is None for s in scenes),
        "no rating": any(s.rating100 is None for s in scenes),
        "rating": any(s.rating100 is not None for s in scenes),
        "0 groups": any(not s.group_ids for s in scenes),
        "1 group": any(len(s.group_ids) == 1 for s in scenes),
        "2 groups": any(len(s.group_ids) == 2 for s in scenes),
        "no file": sum(1 for s in scenes if not s.files) >= 2,
        "two files": sum(1 for s in scenes if len(s.files) == 2) >= 2,
        "duplicate basenames": any(
            len({posixpath.dirname(f.path) for f in fs}) > 1 and len({f.size for f in fs}) > 1
            for fs in duplicates
        ),
        "no cover": any(s.cover_version is None for s in scenes),
        "nested folders": any(f.path.count("/") >= 5 for f in files),
        "GB-sized file": any(f.size > 1_000_000_000 for f in files),
        "sub-GB file": any(f.size < 1_000_000_000 for f in files),
    }


@pytest.mark.parametrize("n_scenes", [20, 21, 37, 150])
@pytest.mark.parametrize("seed", [0, 1, 2, 7, 99])
def test_every_variety_is_present_from_20_scenes(n_scenes: int, seed: int) -> None:
    report = variety_report(generate_library(n_scenes, seed=seed))
    missing = [name for name, present in report.items() if not present]
    assert not missing, f"seed {seed}, {n_scenes} scenes lack: {missing}"


def test_same_seed_same_library_other_seed_other_library() -> None:
    assert generate_library(60, seed=5) == generate_library(60, seed=5)
    assert generate_library(60, seed=5) != generate_library(60, seed=6)


@pytest.mark.parametrize("n_scenes", [0, 1, 5, 19])
def test_small_libraries_are_valid(n_scenes: int) -> None:
    library = generate_library(n_scenes)
    assert sorted(library.scenes) == list(range(1, n_scenes + 1))


def test_references_paths_and_sizes_are_consistent() -> None:
    library = generate_library(300, seed=3)
    file_ids = Counter()
    paths = Counter()
    for scene in library.scenes.values():
        assert scene.studio_id is None or scene.studio_id in library.studios
        assert set(scene.performer_ids) <= set(library.performers)
        assert set(scene.tag_ids) <= set(library.tags)
        assert set(scene.group_ids) <= set(library.groups)
        assert 0 <= len(scene.performer_ids) <= 8
        assert 0 <= len(scene.tag_ids) <= 30
        assert 0 <= len(scene.group_ids) <= 2
        assert scene.rating100 is None or 1 <= scene.rating100 <= 100
        assert scene.date is None or re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", scene.date)
        for file in scene.files:
            file_ids[file.id] += 1
            paths[file.path] += 1
            assert file.path.startswith("/data/stash/")
            assert posixpath.isabs(file.path) and "//" not in file.path
            assert 100_000_000 <= file.size <= 10_000_000_000
            assert file.duration > 0
    assert max(file_ids.values()) == 1 and max(paths.values()) == 1
    for studio in library.studios.values():
        assert studio.parent_id is None or library.studios[studio.parent_id].parent_id is None
    for tag in library.tags.values():
        assert set(tag.parent_ids) <= set(library.tags) and tag.id not in tag.parent_ids


def test_timestamps_are_rfc3339_in_the_offset_of_now_and_ordered() -> None:
    now = "2025-06-01T12:00:00+10:00"
    library = generate_library(200, seed=4, now=now)
    for scene in library.scenes.values():
        assert RFC3339.match(scene.created_at) and scene.created_at.endswith("+10:00")
        assert RFC3339.match(scene.updated_at) and scene.updated_at.endswith("+10:00")
        created = datetime.fromisoformat(scene.created_at)
        updated = datetime.fromisoformat(scene.updated_at)
        assert created <= updated <= datetime.fromisoformat(now)
    utc = generate_library(5, now="2025-06-01T02:00:00Z")
    assert all(s.updated_at.endswith("Z") for s in utc.scenes.values())


def test_plex_path_and_path_map() -> None:
    library = generate_library(5, stash_root="/data/stash/", plex_root="/plex/media")
    assert library.path_map == "/data/stash => /plex/media"
    assert library.plex_path("/data/stash/a/b.mp4") == "/plex/media/a/b.mp4"
    assert library.plex_path("/data/stashed/b.mp4") == "/data/stashed/b.mp4"


def test_not_in_plex_ratio_marks_scenes_with_files_only() -> None:
    library = generate_library(200, seed=8, not_in_plex_ratio=0.25)
    with_files = [s for s in library.scenes.values() if s.files]
    waiting = [s for s in library.scenes.values() if not s.in_plex]
    assert all(s.files for s in waiting)
    assert len(waiting) == round(len(with_files) * 0.25)
    assert all(s.in_plex for s in generate_library(50).scenes.values())
    with pytest.raises(ValueError):
        generate_library(5, not_in_plex_ratio=1.5)


class RecordingPlex:
    """Records the calls seed_plex makes (the real emulator is exercised elsewhere)."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, list[str], str]] = []
        self.items: list[dict] = []
        self.scannable: list[tuple[int, str, int]] = []

    def add_section(self, title: str, locations: list[str], type: str = "movie") -> int:
        self.sections.append((title, locations, type))
        return 7

    def add_item(
        self, section_id, files, *, sizes=None, title=None, duration_ms=600_000, **agent
    ) -> int:
        self.items.append(
            {
                "section": section_id,
                "files": files,
                "sizes": sizes,
                "title": title,
                "ms": duration_ms,
                **agent,
            }
        )
        return 1000 + len(self.items)

    def add_scannable_file(self, section_id: int, path: str, size: int = 1_000_000) -> None:
        self.scannable.append((section_id, path, size))


def test_seed_plex_adds_one_item_per_file_and_scannable_files_for_the_rest() -> None:
    library = generate_library(80, seed=2, not_in_plex_ratio=0.1)
    plex = RecordingPlex()
    assert seed_plex(plex, library, section_title="Scenes") == 7
    assert plex.sections == [("Scenes", ["/plex/media"], "movie")]
    expected_items = [
        (library.plex_path(f.path), f.size)
        for s in library.scenes.values()
        if s.in_plex
        for f in s.files
    ]
    assert [(i["files"], i["sizes"]) for i in plex.items] == expected_items
    for item in plex.items:
        assert item["section"] == 7 and item["files"].startswith("/plex/media/")
        assert item["title"] == posixpath.splitext(posixpath.basename(item["files"]))[0]
        assert item["ms"] > 0
    expected_scannable = [
        (7, library.plex_path(f.path), f.size)
        for s in library.scenes.values()
        if not s.in_plex
        for f in s.files
    ]
    assert plex.scannable == expected_scannable and expected_scannable


# --------------------------------------------------------------------------- traps
def trap_report(library: SampleLibrary) -> dict[str, bool]:
    """Which situations of the issue the library sets."""
    from stash2plex.sandbox.library import DEEP_TAG_CHAIN, TV_SECTION
    from stash2plex.sandbox.verify import CONFLICT, LEFT_ALONE, expected_items

    items = library.plex_items()
    owners = {f.path: s for s in library.scenes.values() for f in s.files}
    agent = [p for p in library.agent]
    expected = expected_items(library).values()
    chain = [t for t in library.tags.values() if t.name in DEEP_TAG_CHAIN]
    leaf = next((t for t in chain if t.name == DEEP_TAG_CHAIN[-1]), None)
    plex_paths = [library.plex_path(p) for item in items for p in item]
    return {
        "20 % agent-filled": abs(len(agent) - 0.2 * len(items)) <= 1,
        "agent item, no performers": any(
            not owners[p].performer_ids and owners[p].title for p in agent
        ),
        "agent item, no tags": any(not owners[p].tag_ids and owners[p].title for p in agent),
        "fresh scene on an agent item": any(e.state == LEFT_ALONE for e in expected),
        "stacked conflict": any(e.state == CONFLICT for e in expected),
        "a scene's own stacked parts": any(
            len(item) == 2 and len({owners[p].id for p in item}) == 1 for item in items
        ),
        "multi-item scene": any(
            len(s.files) == 2
            and s.in_plex
            and not any(f.path in x for x in library.stacks for f in s.files)
            for s in library.scenes.values()
        ),
        "NFD Plex path": any(not unicodedata.is_normalized("NFC", p) for p in plex_paths),
        "Windows Plex path": all(p.startswith("M:\\") for p in plex_paths),
        "rule in another case and slash": library.path_map.endswith("m:/"),
        "five-level chain": len(chain) == 5 and leaf is not None and len(leaf.parent_ids) == 2,
        "leaf tag on a scene": leaf is not None
        and any(leaf.id in s.tag_ids for s in library.scenes.values() if s.files),
        "TV library": any(kind == TV_SECTION[1] for _, kind, _ in library.extra_sections),
        # A Windows disk cannot hold two names that differ in case only.
        "no case-only twins": len({p.casefold() for p in plex_paths}) == len(plex_paths),
    }


@pytest.mark.parametrize("n_scenes", [40, 120, 400, 2000])
@pytest.mark.parametrize("seed", [0, 1, 5])
def test_the_trap_library_sets_every_situation(n_scenes: int, seed: int) -> None:
    report = trap_report(generate_library(n_scenes, seed=seed, traps=True))
    missing = [name for name, present in report.items() if not present]
    assert not missing, f"seed {seed}, {n_scenes} scenes lack: {missing}"


def test_traps_are_deterministic_and_off_by_default() -> None:
    assert generate_library(60, seed=2, traps=True) == generate_library(60, seed=2, traps=True)
    plain = generate_library(60, seed=2)
    assert not plain.agent and not plain.stacks and not plain.extra_sections
    with pytest.raises(ValueError):
        generate_library(20, traps=True)


def test_seed_plex_stacks_parts_fills_agent_items_and_adds_the_tv_library() -> None:
    library = generate_library(60, seed=3, traps=True)
    plex = RecordingPlex()
    seed_plex(plex, library, section_title="Scenes")
    assert plex.sections[0] == ("Scenes", ["M:\\"], "movie")
    assert plex.sections[1][2] == "show"
    stacked = [i for i in plex.items if isinstance(i["files"], list)]
    assert len(stacked) == len(library.stacks)
    assert all(" - part" not in (i["title"] or "") for i in stacked if i["title"])
    filled = [i for i in plex.items if i.get("agent") is not None]
    assert len(filled) == len(library.agent) and all(i["title"] is None for i in filled)


def test_the_oracle_finds_a_wrong_field_a_stray_lock_and_a_written_conflict() -> None:
    from stash2plex.sandbox.plex_emulator import PlexEmulator
    from stash2plex.sandbox.verify import CONFLICT, expected_items, library_problems

    library = generate_library(60, seed=3, traps=True)
    with PlexEmulator(token="t") as plex:
        seed_plex(plex, library)
        problems = library_problems(plex, library)
        expected = expected_items(library)
        # Nothing synced yet: every synced-to-be item is wrong, conflicts and fresh ones fine.
        assert {p for p, e in expected.items() if e.state == "synced"} <= set(problems)
        conflict = next(p for p, e in expected.items() if e.state == CONFLICT)
        assert conflict not in problems
        key = plex.find_by_file(library.plex_path(conflict))
        plex.library.get_item(key).locked.add("title")
        assert "written although conflict" in library_problems(plex, library)[conflict][0]
