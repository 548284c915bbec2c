"""Deterministic matching over an index: mapped path, basename + size, ambiguity."""

from stash2plex.records import IndexEntry
from stash2plex.sync.matching import match_scene
from stash2plex.sync.pathmap import parse_path_map

INDEX = [
    IndexEntry(1, 1, "/plex/a/clip.mp4", 100),
    IndexEntry(2, 1, "/plex/b/clip.mp4", 200),
    IndexEntry(3, 1, "/plex/c/unique.mp4", 300),
    IndexEntry(4, 1, "/plex/d/second.mp4", 400),
]
RULES = parse_path_map("/stash => /plex")


def by_path(path):
    return [e for e in INDEX if e.path == path]


def by_basename(name):
    return [e for e in INDEX if e.path.rsplit("/", 1)[-1] == name]


def run(files, rules=RULES):
    return match_scene(files, rules, by_path, by_basename)


def test_mapped_full_path_wins_over_duplicate_basenames():
    result = run([{"path": "/stash/b/clip.mp4", "size": 200}])
    assert result.match.rating_key == 2
    assert result.match.rule == "mapped_path"


def test_second_file_of_a_scene_can_match():
    result = run(
        [{"path": "/stash/zz/missing.mp4", "size": 1}, {"path": "/stash/d/second.mp4", "size": 400}]
    )
    assert result.match.rating_key == 4


def test_basename_with_size_matches_when_folders_differ():
    result = run([{"path": "/elsewhere/unique.mp4", "size": 300}], rules=())
    assert result.match.rating_key == 3
    assert result.match.rule == "basename_size"


def test_duplicate_basename_with_other_size_does_not_cross_match():
    result = run([{"path": "/stash/new/clip.mp4", "size": 999}])
    assert result.match is None
    assert result.ambiguous


def test_same_name_different_size_single_candidate_is_not_a_match():
    result = run([{"path": "/stash/new/unique.mp4", "size": 1}])
    assert result.match is None
    assert not result.ambiguous


def test_ambiguous_basename_lists_candidates():
    result = run([{"path": "/other/clip.mp4", "size": None}], rules=())
    assert result.match is None
    assert [c.rating_key for c in result.candidates] == [1, 2]


def test_two_files_held_as_two_plex_items_match_the_primary_file():
    result = run(
        [{"path": "/stash/a/clip.mp4", "size": 100}, {"path": "/stash/d/second.mp4", "size": 400}]
    )
    assert result.match.rating_key == 1


def test_every_file_of_a_scene_matches_its_own_item_exact_paths_first():
    result = run(
        [
            {"path": "/elsewhere/unique.mp4", "size": 300},  # by name and size only
            {"path": "/stash/d/second.mp4", "size": 400},  # exact
            {"path": "/stash/a/clip.mp4", "size": 100},  # exact
        ]
    )
    assert [m.rating_key for m in result.matches] == [4, 1, 3]
    assert result.match.rating_key == 4


def test_paths_compare_in_nfc_and_windows_paths_without_case():
    import unicodedata

    from stash2plex.records import IndexEntry

    index = [
        IndexEntry(7, 1, unicodedata.normalize("NFD", "/plex/Ünïcode/Café.mp4"), 5),
        IndexEntry(8, 1, "M:\\Cam A\\clip.mp4", 6),
        IndexEntry(9, 1, "M:\\Cam B\\clip.mp4", 6),
    ]
    from stash2plex.paths import basename_key, path_key

    def by_path(path):
        return [e for e in index if path_key(e.path) == path_key(path)]

    def by_name(name):
        return [e for e in index if basename_key(e.path) == basename_key(name)]

    rules = parse_path_map("/stash => /plex; /win => m:/")
    found = match_scene([{"path": "/stash/Ünïcode/Café.mp4", "size": 5}], rules, by_path, by_name)
    assert found.match.rating_key == 7
    found = match_scene([{"path": "/win/Cam B/clip.mp4", "size": 6}], rules, by_path, by_name)
    assert (found.match.rating_key, found.match.rule) == (9, "mapped_path")


def test_a_part_is_claimed_by_its_path_or_by_name_and_size():
    from stash2plex.sync.matching import claims_part

    assert claims_part({"path": "/stash/a/clip.mp4", "size": 1}, "/plex/a/clip.mp4", 9, RULES)
    assert claims_part({"path": "/x/clip.mp4", "size": 9}, "/plex/a/CLIP.mp4", 9, ())
    assert not claims_part({"path": "/x/clip.mp4", "size": 8}, "/plex/a/clip.mp4", 9, ())
    assert not claims_part({"path": "", "size": 9}, "/plex/a/clip.mp4", 9, ())
