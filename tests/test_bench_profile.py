"""The sync benchmark's profile (`bench/bench_library_sync.py --profile`) counts each sample of
py-spy's raw output to the layer of its innermost frame: proven on raw lines as py-spy 0.4
writes them (module paths for installed packages, the standard library's own)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from sampling import OTHER, Samples, function_of, layer_of, read_raw

RAW = """\
_bootstrap (threading.py:995);Worker._attempt (stash2plex/engine/worker.py:800);\
parse_headers (http/client.py:243) 30
_bootstrap (threading.py:995);SceneSyncer.plan (stash2plex/sync/syncer.py:959);\
quote (urllib/parse.py:841) 10
_bootstrap (threading.py:995);Store.save_link (stash2plex/store/db.py:833) 8
_bootstrap (threading.py:995);Store.save_link (stash2plex/store/db.py:834) 2
_bootstrap (threading.py:995);<module> (importlib/__init__.py:126) 5
not a sample line
"""


def test_raw_stacks_are_read_with_their_counts_and_odd_lines_skipped():
    stacks = read_raw(RAW)
    assert sum(stacks.values()) == 55
    assert stacks[("_bootstrap (threading.py:995)", "Store.save_link (stash2plex/store/db.py:833)")]


@pytest.mark.parametrize(
    "frame, layer",
    [
        ("parse_headers (http/client.py:243)", "HTTP client"),
        ("BufferedSubFile.push (email/feedparser.py:109)", "HTTP client"),
        ("HTTPConnectionPool.urlopen (urllib3/connectionpool.py:793)", "HTTP client"),
        ("joinArgs (plexapi/utils.py:188)", "Plex request encoding"),
        ("JSONDecoder.raw_decode (json/decoder.py:353)", "answers parsed"),
        ("Store.links (stash2plex/store/db.py:791)", "Stash2Plex's store"),
        ("name_key (stash2plex/names.py:21)", "Stash2Plex's sync"),
        ("Worker._finish (stash2plex/engine/worker.py:724)", "Stash2Plex's engine"),
        ("Condition.wait (threading.py:327)", "Stash2Plex's engine"),
        # A path as py-spy prints it for a file outside any import root.
        ("Wire.note (/home/me/stash2plex/bench/bench_library_sync.py:91)", "the benchmark"),
        ("<module> (importlib/__init__.py:126)", OTHER),
    ],
)
def test_each_frame_counts_to_its_layer(frame, layer):
    assert layer_of(frame).startswith(layer)


def test_shares_add_up_and_a_function_adds_its_lines():
    samples = Samples(read_raw(RAW))
    shares = dict(samples.by_layer())
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares[layer_of("x (http/client.py:1)")] == pytest.approx(30 / 55)
    top = dict(samples.top_functions(2))
    assert top == {
        "parse_headers (http/client.py)": pytest.approx(30 / 55),
        "quote (urllib/parse.py)": pytest.approx(10 / 55),
    }
    assert function_of("Store.save_link (stash2plex/store/db.py:833)") == (
        "Store.save_link (stash2plex/store/db.py)"
    )
