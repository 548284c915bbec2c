from stash2plex.pseudonyms import obfuscate_paths, pseudonym


def test_paths_become_stable_pseudonyms_keeping_the_extension():
    text = "not in Plex yet (looked for /media/Clips 2024/My Scene (1).mp4, /x/y.mkv)"
    out = obfuscate_paths(text)
    assert "/media" not in out and "My Scene" not in out and "/x/y" not in out
    assert pseudonym("/x/y.mkv") in out
    assert obfuscate_paths(text) == out
    assert out.startswith("not in Plex yet (looked for <path-")


def test_windows_paths_and_plain_text():
    assert "Films" not in obfuscate_paths(r"file D:\Films\a.mp4 missing")
    assert obfuscate_paths("3 scenes synced, 1/2 done") == "3 scenes synced, 1/2 done"
