import pytest

from stash2plex.sync.pathmap import PathMapError, map_path, parse_path_map


def test_longest_prefix_wins_and_separator_follows_target():
    rules = parse_path_map("/data => /media; /data/special => D:\\Special")
    assert map_path("/data/x/a.mp4", rules) == "/media/x/a.mp4"
    assert map_path("/data/special/x/a.mp4", rules) == "D:\\Special\\x\\a.mp4"
    assert map_path("/other/a.mp4", rules) == "/other/a.mp4"


def test_prefix_matches_whole_path_segments_only():
    rules = parse_path_map("/data => /media")
    assert map_path("/database/a.mp4", rules) == "/database/a.mp4"


@pytest.mark.parametrize("text", ["/a -> /b", "/a => ", " => /b", "/a => /b => /c"])
def test_invalid_rule_is_named(text):
    with pytest.raises(PathMapError, match="path_map rule"):
        parse_path_map(text)


def test_a_windows_stash_prefix_applies_in_any_case_and_with_either_slash():
    for rule in (
        "c:\\media => /media/plex",
        "C:/Media => /media/plex",
        "C:\\MEDIA\\ => /media/plex",
    ):
        rules = parse_path_map(rule)
        assert map_path("C:\\Media\\Studio A\\x.mp4", rules) == "/media/plex/Studio A/x.mp4"
        assert map_path("c:/media/Studio A/x.mp4", rules) == "/media/plex/Studio A/x.mp4"
    rules = parse_path_map("C:\\Media => /media/plex")
    assert map_path("C:\\Mediathek\\x.mp4", rules) == "C:\\Mediathek\\x.mp4"  # whole segments


def test_a_drive_root_target_keeps_the_windows_separator():
    for target in ("M:\\", "M:", "m:/"):
        rules = parse_path_map(f"/data/stash => {target}")
        mapped = map_path("/data/stash/Studio A/x.mp4", rules)
        assert mapped.replace("m:", "M:") == "M:\\Studio A\\x.mp4"
    rules = parse_path_map("/data => \\\\nas\\media")
    assert map_path("/data/a/b.mp4", rules) == "\\\\nas\\media\\a\\b.mp4"


def test_posix_prefixes_compare_in_one_unicode_form_but_keep_their_case():
    import unicodedata

    rules = parse_path_map(unicodedata.normalize("NFD", "/data/Földer") + " => /plex")
    assert map_path("/data/Földer/x.mp4", rules) == "/plex/x.mp4"
    assert map_path("/data/földer/x.mp4", rules) == "/data/földer/x.mp4"


def test_root_prefixes_on_either_side():
    assert map_path("/a/b.mp4", parse_path_map("/ => /mnt")) == "/mnt/a/b.mp4"
    assert map_path("/data/a/b.mp4", parse_path_map("/data => /")) == "/a/b.mp4"


def test_unmap_reads_the_rules_backwards():
    from stash2plex.sync.pathmap import unmap_path

    rules = parse_path_map("/data/stash => m:/; /data/stash/special => /plex/special")
    assert unmap_path("M:\\Studio A\\x.mp4", rules) == "/data/stash/Studio A/x.mp4"
    assert unmap_path("/plex/special/x.mp4", rules) == "/data/stash/special/x.mp4"
