import pytest

from stash2plex.errors import HookError
from stash2plex.plugin.hook_events import parse_hook


@pytest.mark.parametrize(
    "trigger, action",
    [
        ("Scene.Update.Post", "scene_dirty"),
        ("Scene.Create.Post", "scene_dirty"),
        ("Scene.Destroy.Post", "scene_deleted"),
        ("Performer.Update.Post", "entity_changed"),
        ("Tag.Merge.Post", "entity_changed"),
        ("Performer.Destroy.Post", "entity_deleted"),
        ("Studio.Destroy.Post", "entity_deleted"),
        ("Tag.Destroy.Post", "entity_deleted"),
        ("Group.Destroy.Post", "entity_deleted"),
        ("Image.Update.Post", "ignored"),
        ("Image.Destroy.Post", "ignored"),
    ],
)
def test_trigger_routes(trigger, action):
    assert parse_hook({"type": trigger, "id": 5, "input": None}).action == action


def test_movie_hooks_count_as_group_changes():
    assert parse_hook({"type": "Movie.Update.Post", "id": 2}).entity_kind == "group"
    assert parse_hook({"type": "Movie.Destroy.Post", "id": 2}).entity_kind == "group"


def test_the_manifest_subscribes_to_every_destroy_the_product_handles():
    from pathlib import Path

    from stash2plex.sandbox.manifest import load_manifest

    manifest = load_manifest(Path(__file__).resolve().parents[1] / "Stash2Plex.yml")
    triggers = {t for hook in manifest.hooks for t in hook.triggered_by}
    for kind in ("Performer", "Studio", "Tag", "Group"):
        trigger = f"{kind}.Destroy.Post"
        assert trigger in triggers
        assert parse_hook({"type": trigger, "id": 4}).action == "entity_deleted"


def test_input_of_any_shape_is_ignored():
    event = parse_hook({"type": "Scene.Update.Post", "id": 3, "input": [{"id": "3"}, {"id": "4"}]})
    assert event.object_id == 3


@pytest.mark.parametrize(
    "raw, expected", [(7, 7), (7.0, 7), ("7", 7), (" 7 ", 7), (2**63 - 1, 2**63 - 1)]
)
def test_whole_number_ids_are_taken(raw, expected):
    assert parse_hook({"type": "Scene.Update.Post", "id": raw}).object_id == expected


@pytest.mark.parametrize(
    "context, message",
    [
        (None, "must be an object"),
        ({"type": "nonsense", "id": 1}, "not a Stash hook trigger"),
        ({"type": "Scene.Upd\ufffdte.Post", "id": 1}, "not a Stash hook trigger"),
        ({"type": 5, "id": 1}, "not a Stash hook trigger"),
        ({"id": 7}, "hookContext.type is missing"),
        ({"type": "Scene.Update.Post", "id": "x"}, "is not an id"),
        ({"type": "Scene.Update.Post", "id": 3.7}, "not a whole number"),
        ({"type": "Scene.Update.Post", "id": True}, "is not an id"),
        ({"type": "Scene.Update.Post", "id": None}, "is not an id"),
        ({"type": "Scene.Update.Post", "id": [1]}, "is not an id"),
        ({"type": "Scene.Update.Post", "id": 2**63}, "out of range"),
        ({"type": "Scene.Update.Post", "id": -4}, "out of range"),
        ({"type": "Scene.Update.Post", "id": 1e300}, "out of range"),
        ({"type": "Scene.Update.Post", "id": "\u00b2"}, "is not an id"),
        ({"type": "Scene.Update.Post", "id": "\uff11\uff12"}, "is not an id"),
        ({"type": "Scene.Update.Post", "id": "9" * 5000}, "out of range"),
        ({"type": "Scene.Update.Post"}, "without a scene id"),
    ],
)
def test_malformed_contexts_are_named(context, message):
    with pytest.raises(HookError, match=message):
        parse_hook(context)
