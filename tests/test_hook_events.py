import pytest

from stash2plex.plugin.hook_events import (
    ENTITY_CHANGED,
    IGNORED,
    SCENE_DELETED,
    SCENE_DIRTY,
    HookError,
    parse_hook,
)


@pytest.mark.parametrize(
    "trigger, action",
    [
        ("Scene.Update.Post", SCENE_DIRTY),
        ("Scene.Create.Post", SCENE_DIRTY),
        ("Scene.Destroy.Post", SCENE_DELETED),
        ("Performer.Update.Post", ENTITY_CHANGED),
        ("Tag.Merge.Post", ENTITY_CHANGED),
        ("Image.Update.Post", IGNORED),
    ],
)
def test_trigger_routes(trigger, action):
    assert parse_hook({"type": trigger, "id": 5, "input": None}).action == action


def test_movie_hooks_count_as_group_changes():
    assert parse_hook({"type": "Movie.Update.Post", "id": 2}).entity_kind == "group"


def test_input_of_any_shape_is_ignored():
    event = parse_hook({"type": "Scene.Update.Post", "id": 3, "input": [{"id": "3"}, {"id": "4"}]})
    assert event.object_id == 3


@pytest.mark.parametrize(
    "context, message",
    [
        (None, "must be an object"),
        ({"type": "nonsense", "id": 1}, "not a Stash hook trigger"),
        ({"type": "Scene.Update.Post", "id": "x"}, "not an integer"),
        ({"type": "Scene.Update.Post"}, "without a scene id"),
    ],
)
def test_malformed_contexts_are_named(context, message):
    with pytest.raises(HookError, match=message):
        parse_hook(context)
