"""A long first sync keeps its request floor once the library index is older than its freshness
window: the items of a batch's first pushes are read 100 a request instead of one request per
scene, and a collection the user added in Plex after the listing is still kept."""

from __future__ import annotations

from stash2plex.engine.worker import Worker
from stash2plex.sandbox.verify import library_problems
from stash2plex.sync.read_ahead import READ_AHEAD_TRUST_SECONDS, ItemsReadAhead
from stash2plex.sync.syncer import INDEX_FRESH_SECONDS

from .sandbox import SteppedClock, sandbox

DETAIL = "GET /library/metadata/{ids}"


def test_first_pushes_after_the_freshness_window_read_their_items_a_batch_at_a_time(tmp_path):
    with sandbox(tmp_path, scenes=60, seed=21) as box:
        scenes = sorted(
            (s for s in box.library.scenes.values() if s.files and s.in_plex and s.studio_id),
            key=lambda s: s.id,
        )
        first, rest = scenes[0], scenes[1:]
        box.drain(first.id)  # lists the library into the index

        # Later than the listing, the user puts one item in a collection of their own.
        favourite = rest[7]
        key = box.rating_key(favourite)
        box.plex.library.apply_edit(
            box.section_id,
            [("id", str(key)), ("type", "1"), ("collection[0].tag.tag", "Watch Later")],
        )

        clock = SteppedClock()
        clock.offset = INDEX_FRESH_SECONDS + 1  # the listing is now too old to trust
        before = len(box.plex.log.entries)
        box.queue(*[s.id for s in rest])
        Worker(box.data_dir, clock=clock).run(until_idle=True)

        for scene in rest:
            assert box.job(scene.id).state == "done", scene.id
        reads = [r for r in box.plex.log.entries[before:] if r.route == DETAIL]
        one_by_one = [r for r in reads if "," not in r.path]
        assert one_by_one == [], f"{len(one_by_one)} items read one at a time"
        assert 1 <= len(reads) <= 3, "one read per claimed batch of first pushes"
        collections = box.plex.item(key).collections
        assert "Watch Later" in collections and len(collections) > 1


def test_an_item_read_ahead_is_taken_once_while_young_and_never_after_a_write():
    now = [1000.0]
    ahead = ItemsReadAhead(clock=lambda: now[0])

    class Item:
        def __init__(self, rating_key: int) -> None:
            self.rating_key = rating_key

    one, two, three = Item(1), Item(2), Item(3)
    ahead.put([one, two, three])  # type: ignore[list-item]
    assert ahead.take(1) is one
    assert ahead.take(1) is None  # each plan reads its own state: never handed out twice
    ahead.discard(2)  # written: what was read is out of date
    assert ahead.take(2) is None
    now[0] += READ_AHEAD_TRUST_SECONDS + 1
    assert ahead.take(3) is None  # too old to trust
    ahead.put([])
    assert len(ahead) == 0


def test_first_pushes_that_need_their_whole_item_read_it_a_batch_at_a_time(tmp_path):
    """A Plex agent filled some items (genres, actors, collections) that the scenes' own lists
    replace: emptying a list cut at the listing's limit needs every name, so the plan reads
    the item in full even with a fresh listing; those reads go a batch at a time too."""
    with sandbox(tmp_path, scenes=150, seed=21, traps=True) as box:
        scenes = sorted(
            (s for s in box.library.scenes.values() if s.files and s.in_plex), key=lambda s: s.id
        )
        box.drain(scenes[0].id)  # lists the library into the index
        before = len(box.plex.log.entries)

        box.drain(*[s.id for s in scenes[1:]])

        reads = [r for r in box.plex.log.entries[before:] if r.route == DETAIL]
        items = sum(len(r.path.rsplit("/", 1)[1].split(",")) for r in reads)
        assert items > 2 * len(reads), f"{len(reads)} reads for {items} items"
        assert len(reads) <= 3, "one read per claimed batch of first pushes"
        # Every item exactly right: the agent's names the scenes do not have are gone.
        assert library_problems(box.plex, box.library) == {}


def test_scenes_held_by_a_conflict_are_not_read_ahead_and_end_together_once_merged(tmp_path):
    """Two scenes whose files Plex stacked into one item wait for the user (a conflict). Sync
    All queues them again: they conflict again without their item being read (an unchanged
    re-sync asks Plex nothing for them). Merged in Stash (which fires no hook), the survivor
    syncs and the scene merged away is closed at once, not at its retry an hour later."""
    with sandbox(tmp_path, scenes=20, seed=5) as box:
        first, second = sorted(
            (s for s in box.library.scenes.values() if len(s.files) == 1 and s.in_plex),
            key=lambda s: s.id,
        )[:2]
        for scene in (first, second):
            box.plex.delete_item(box.rating_key(scene))
        stacked = box.plex.add_item(
            box.section_id,
            [box.library.plex_path(s.files[0].path) for s in (first, second)],
            sizes=[first.files[0].size, second.files[0].size],
            stacked=True,
        )
        box.drain(first.id, second.id)
        assert box.job(first.id).reason == box.job(second.id).reason == "conflict"

        clock = SteppedClock()
        clock.offset = INDEX_FRESH_SECONDS + 1  # every first push would be read ahead
        before = len(box.plex.log.entries)
        box.queue(first.id, second.id)
        Worker(box.data_dir, clock=clock).run(until_idle=True)

        assert box.job(first.id).reason == box.job(second.id).reason == "conflict"
        assert [r.path for r in box.plex.log.entries[before:] if r.route == DETAIL] == []

        box.stash.merge_scenes(first.id, [second.id])
        box.queue(first.id)
        Worker(box.data_dir, clock=clock).run(until_idle=True)
        assert box.job(first.id).state == "done"
        assert box.plex.item(stacked).title == first.title.strip()
        # The scene merged away waited on the same conflict: it is closed now, not in an hour.
        assert box.job(second.id).state == "done"
