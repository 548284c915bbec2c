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
