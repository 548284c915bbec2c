"""Desired Plex state from a scene: text cleaning, dates, fallbacks, minimal edits."""

from stash2plex.settings.config import Config
from stash2plex.sync.metadata import (
    changed_fields,
    clean_text,
    desired_item,
    edit_params,
    fingerprint,
    plex_date,
)


def scene(**overrides):
    base = {
        "id": "1",
        "title": "A title",
        "details": "Para one.\n\nPara two.",
        "date": "2021-03-04",
        "studio": {"name": "Studio"},
        "files": [{"path": "/data/x/My File.mp4", "basename": "My File.mp4"}],
    }
    base.update(overrides)
    return base


def test_clean_text_keeps_breaks_tabs_and_typography_drops_controls():
    text = "“Quotes” — dash…\r\nline\ttab\x00\x07 zwj👩\u200d💻"
    assert clean_text(text, 100) == "“Quotes” — dash…\nline\ttab zwj👩\u200d💻"


def test_clean_text_limits_length():
    assert len(clean_text("x" * 50, 10)) == 10


def test_partial_dates_expand_to_first_day_and_garbage_is_dropped():
    assert plex_date("2021") == "2021-01-01"
    assert plex_date("2021-07") == "2021-07-01"
    assert plex_date("2021-07-09") == "2021-07-09"
    assert plex_date("July 2021") == ""
    assert plex_date(None) == ""


def test_title_falls_back_to_file_name():
    assert desired_item(scene(title=None), Config()).fields["title"] == "My File"
    assert desired_item(scene(title="  "), Config()).fields["title"] == "My File"


def test_unchanged_scene_needs_no_edit_and_changed_field_only_itself():
    first = desired_item(scene(), Config())
    pushed = first.fingerprints()
    assert changed_fields(first, pushed) == []
    second = desired_item(scene(details="New"), Config())
    assert changed_fields(second, pushed) == ["summary"]


def test_edit_params_set_and_lock_each_field():
    desired = desired_item(scene(), Config())
    assert edit_params(desired, ["title", "studio"]) == {
        "title.value": "A title",
        "title.locked": 1,
        "studio.value": "Studio",
        "studio.locked": 1,
    }


def test_a_field_or_list_we_empty_is_locked_empty_so_an_agent_cannot_refill_it():
    from stash2plex.sync.metadata import Actor, DesiredItem

    desired = DesiredItem(
        fields={"title": "T", "summary": "", "studio": "", "originallyAvailableAt": ""},
        genres=(),
        actors=(Actor("A"),),
    )
    keys = ["title", "summary", "studio", "originallyAvailableAt", "genre", "actor"]
    params = edit_params(desired, keys, present={"genre": ["Drama", "Sci, Fi", "Drama"]})
    assert all(params[f"{key}.locked"] == 1 for key in keys), params
    assert params["summary.value"] == params["studio.value"] == ""
    assert params["originallyAvailableAt.value"] == ""
    assert params["genre[].tag.tag-"] == "Drama,Sci%2C%20Fi"
    assert params["actor[0].tag.tag"] == "A"
    # Nothing in Plex to remove: the emptied list is still locked.
    assert edit_params(desired, ["genre"]) == {"genre.locked": 1}


def test_names_compare_in_one_unicode_form_and_any_case():
    import unicodedata

    from stash2plex.sync.metadata import collection_list, genre_list

    nfd = unicodedata.normalize("NFD", "Café Scène")
    nfc = unicodedata.normalize("NFC", "café scène")
    tags = [{"id": "1", "name": nfd}, {"id": "2", "name": "Plain"}]
    assert genre_list(tags, (), (nfc,)) == ("Plain",)
    assert genre_list(tags, (nfc.upper(),), ()) == (nfd,)
    # A label tag typed in NFD names the NFC tag.
    privé = unicodedata.normalize("NFC", "Privé")
    assert genre_list(
        [{"id": "3", "name": privé}], (unicodedata.normalize("NFD", "Privé"),), ()
    ) == (privé,)
    # Two tags that are one name in two spellings are one genre, spelled as the first.
    assert genre_list([*tags, {"id": "4", "name": nfc}], (), ()) == (nfd, "Plain")
    # One performer name in two spellings is one actor.
    performers = [{"id": "1", "name": nfd}, {"id": "2", "name": nfc}, {"id": "3", "name": "B"}]
    actors = desired_item(scene(performers=performers), Config()).actors
    assert [a.name for a in actors] == [nfd, "B"]
    # A collection Plex shows in NFD is the one we added in NFC: kept once, or dropped.
    assert collection_list((nfc,), [nfc], [nfd, "Mine"]) == [nfd, "Mine"]
    assert collection_list((), [nfc], [nfd, "Mine"]) == ["Mine"]
    # The studio and a group of one name in two spellings are one collection.
    config = Config(collection_groups=True)
    both = scene(studio={"name": nfc}, groups=[{"group": {"id": "1", "name": nfd}}])
    assert desired_item(both, config).collections == (nfc,)


def test_own_metadata_is_a_title_details_date_studio_performers_or_tags():
    from stash2plex.sync.metadata import has_own_metadata

    fresh = {"id": "1", "title": None, "details": " ", "files": [{"path": "/a/b.mp4"}]}
    assert not has_own_metadata(fresh)
    assert not has_own_metadata({**fresh, "groups": [{"group": {"id": "1"}}], "rating100": 80})
    for extra in (
        {"title": "x"},
        {"details": "d"},
        {"date": "2020"},
        {"studio": {"name": "S"}},
        {"performers": [{"name": "P"}]},
        {"tags": [{"name": "T"}]},
    ):
        assert has_own_metadata({**fresh, **extra})


def test_clean_text_drops_exactly_the_control_characters_but_tab_and_line_feed():
    import sys
    import unicodedata

    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    kept = {ch for ch in clean_text("x" + every + "x", len(every) + 2)}
    dropped = {ch for ch in every if ch not in kept}
    assert dropped == {
        ch for ch in every if unicodedata.category(ch) == "Cc" and ch not in "\n\t"
    } | {"\r"}  # a carriage return becomes a line feed


def test_fingerprints_keep_their_stored_encoding():
    # Links keep these values: a different encoding would push every scene again.
    assert fingerprint("Title") == "c0e1e00efee44461"
    assert fingerprint(["Café", "Ñandú"]) == "e6cc6a80c9bb85ec"
    assert fingerprint(None) == "2be88ca4242c76e8"
