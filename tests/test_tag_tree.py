"""Tag filters by ancestor: any depth, several parents, cycles."""

from stash2plex.settings.config import build_config
from stash2plex.sync.metadata import desired_item, genre_list, scene_entities
from stash2plex.sync.tag_tree import TagTree

# Root > L1 > L2 > L3 > Leaf, Leaf also under Other; Loop1 <-> Loop2 a cycle.
TAGS = {
    1: ("Root", ()),
    2: ("L1", (1,)),
    3: ("L2", (2,)),
    4: ("L3", (3,)),
    5: ("Leaf", (4, 6)),
    6: ("Other", ()),
    7: ("Loop1", (8,)),
    8: ("Loop2", (7,)),
    9: ("Plain", ()),
}


def tags(*ids):
    return [{"id": str(i), "name": TAGS[i][0]} for i in ids]


def test_ancestors_at_any_depth_through_every_parent_and_across_a_cycle():
    tree = TagTree(TAGS)
    assert tree.ancestors(5) == {1, 2, 3, 4, 6}
    assert tree.ancestors(7) == {8}
    assert tree.lineage_names(5) == {"root", "l1", "l2", "l3", "leaf", "other"}
    assert 5 in tree and 99 not in tree


def test_filters_naming_an_ancestor_cover_the_leaf():
    tree = TagTree(TAGS)
    assert genre_list(tags(5, 9), (), ("ROOT",), tree) == ("Plain",)
    assert genre_list(tags(5, 9), ("root",), (), tree) == ("Leaf",)
    assert genre_list(tags(5, 9), (), ("Other",), tree) == ("Plain",)
    assert genre_list(tags(5, 9), ("L2",), ("Plain",), tree) == ("Leaf",)
    # Without the hierarchy only the tag itself is known.
    assert genre_list(tags(5, 9), (), ("Root",)) == ("Leaf", "Plain")


def test_desired_item_uses_the_tree_and_entities_record_every_ancestor():
    scene = {"id": "1", "title": "t", "tags": tags(5), "files": [{"path": "/x.mp4"}]}
    config = build_config({"tag_exclude": "Root"})
    assert desired_item(scene, config, TagTree(TAGS)).genres == ()
    assert scene_entities(scene, TagTree(TAGS))["tag"] == {1, 2, 3, 4, 5, 6}
    assert scene_entities(scene)["tag"] == {5}


def test_an_ancestor_named_in_another_unicode_form_still_covers_the_leaf():
    import unicodedata

    nfd = unicodedata.normalize("NFD", "Ünïcode Röot")
    tree = TagTree({1: (nfd, ()), 2: ("Leaf", (1,))})
    nfc = unicodedata.normalize("NFC", "ünïcode röot")
    assert nfc in tree.lineage_names(2)
    assert genre_list(tags_of(tree_tags=[(2, "Leaf")]), (), (nfc,), tree) == ()
    assert genre_list(tags_of(tree_tags=[(2, "Leaf")]), (nfc,), (), tree) == ("Leaf",)


def tags_of(tree_tags):
    return [{"id": str(i), "name": name} for i, name in tree_tags]
