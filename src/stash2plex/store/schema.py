"""The store's schema: its migrations, in order, and the names the hook path shares.

Data only, no imports: the hook process (plugin/entry.py) reads `SCHEMA_VERSION` to know it may
write with sqlite3 alone, and `store.db.Store` applies `MIGRATIONS` to bring any older store up.
"""

#: The store's file in the data directory.
DB_FILENAME = "stash2plex.db"
#: kv keys written by hooks as well as by the worker (see store.recording).
HOLDS_KEY = "holds"
SERVER_CONNECTION_KEY = "server_connection"
#: kv keys of Plex's index (sync.syncer.PlexIndex): when it was last refreshed (epoch seconds;
#: 0: stale, list at the next miss), and the libraries last read (the settings they were read
#: for, their ids, titles, folders and uuids, and when: `read_at`).
INDEX_REFRESHED_KEY = "plex_index_refreshed_at"
SECTIONS_KEY = "plex_sections"

# Each migration is applied once, in order; PRAGMA user_version records how many ran.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE jobs (
        scene_id INTEGER PRIMARY KEY,
        state TEXT NOT NULL,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        lease_until REAL,
        lease_owner TEXT,
        generation INTEGER NOT NULL DEFAULT 0,
        source TEXT,
        enqueued_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_error TEXT,
        last_error_class TEXT,
        detail TEXT
    );
    CREATE INDEX jobs_state_due ON jobs (state, due_at);
    CREATE TABLE entity_changes (
        kind TEXT NOT NULL,
        entity_id INTEGER NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (kind, entity_id)
    );
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scene_id INTEGER NOT NULL,
        error_class TEXT NOT NULL,
        message TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        failed_at REAL NOT NULL
    );
    CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at);
    CREATE INDEX dead_letters_scene ON dead_letters (scene_id);
    CREATE TABLE links (
        scene_id INTEGER PRIMARY KEY,
        rating_key INTEGER NOT NULL,
        section_id INTEGER NOT NULL,
        plex_path TEXT NOT NULL,
        fingerprints TEXT NOT NULL DEFAULT '{}',
        synced_at REAL NOT NULL
    );
    CREATE INDEX links_rating_key ON links (rating_key);
    CREATE TABLE plex_index (
        rating_key INTEGER NOT NULL,
        section_id INTEGER NOT NULL,
        path TEXT NOT NULL,
        basename TEXT NOT NULL,
        size INTEGER,
        updated_at INTEGER,
        PRIMARY KEY (rating_key, path)
    );
    CREATE INDEX plex_index_path ON plex_index (path);
    CREATE INDEX plex_index_basename ON plex_index (basename);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        level TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT
    );
    CREATE INDEX events_at ON events (at);
    CREATE TABLE outages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL,
        ended_at REAL,
        jobs_affected INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 2: what a link owns in Plex (list values pushed, collections we added), and one row per
    # indexed Plex item so the index can be refreshed incrementally.
    """
    ALTER TABLE links ADD COLUMN owned TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE plex_items (
        rating_key INTEGER PRIMARY KEY,
        section_id INTEGER NOT NULL,
        collections TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX plex_items_section ON plex_items (section_id);
    """,
    # 3: Plex -> Stash. Per scene what we last pulled: Plex's resume point (Stash keeps no
    # time for its own), and the rating both sides showed at the last decision (`rating_known`
    # says whether `rating_agreed` means "unrated" or "never decided"). And the collection
    # objects in Plex: whether Stash2Plex created them, and what it last put on them.
    """
    CREATE TABLE pull_state (
        scene_id INTEGER PRIMARY KEY,
        resume_offset_ms INTEGER,
        resume_pulled_at REAL,
        rating_known INTEGER NOT NULL DEFAULT 0,
        rating_agreed INTEGER,
        rating_plex_at INTEGER,
        rating_decided_at REAL
    );
    CREATE TABLE plex_collections (
        section_id INTEGER NOT NULL,
        title TEXT NOT NULL,
        ours INTEGER NOT NULL,
        rating_key INTEGER,
        fingerprints TEXT NOT NULL DEFAULT '{}',
        updated_at REAL NOT NULL,
        PRIMARY KEY (section_id, title)
    );
    """,
    # 4: what a finished job did (synced / unchanged / skipped), for reports of drains that a
    # detached worker ran; and indexes for the hot paths at 100,000 jobs: claiming due jobs in
    # order, counting by state and reason, dead letters by class.
    """
    ALTER TABLE jobs ADD COLUMN outcome TEXT;
    CREATE INDEX jobs_due ON jobs (due_at, scene_id) WHERE state IN ('pending', 'waiting');
    CREATE INDEX jobs_state_reason ON jobs (state, reason);
    CREATE INDEX dead_letters_class ON dead_letters (error_class);
    """,
    # 5: a scene may link to several Plex items (one per file Plex holds apart); the ids of
    # the performers, studios, tags and groups each scene showed when pushed (Stash cannot list
    # a deleted one's scenes); deletions waiting to be expanded; index keys that compare paths
    # in one Unicode form (and Windows paths without case); the tags a listing shows per item.
    # The index is a cache: it is emptied so the next sync rebuilds it with the keys.
    """
    CREATE TABLE links_v5 (
        scene_id INTEGER NOT NULL,
        rating_key INTEGER NOT NULL,
        section_id INTEGER NOT NULL,
        plex_path TEXT NOT NULL,
        fingerprints TEXT NOT NULL DEFAULT '{}',
        synced_at REAL NOT NULL,
        owned TEXT NOT NULL DEFAULT '{}',
        position INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (scene_id, rating_key)
    );
    INSERT INTO links_v5 (scene_id, rating_key, section_id, plex_path, fingerprints, synced_at,
                          owned)
        SELECT scene_id, rating_key, section_id, plex_path, fingerprints, synced_at, owned
        FROM links;
    DROP TABLE links;
    ALTER TABLE links_v5 RENAME TO links;
    CREATE INDEX links_rating_key ON links (rating_key);
    CREATE TABLE link_entities (
        kind TEXT NOT NULL,
        entity_id INTEGER NOT NULL,
        scene_id INTEGER NOT NULL,
        PRIMARY KEY (kind, entity_id, scene_id)
    );
    CREATE INDEX link_entities_scene ON link_entities (scene_id);
    CREATE TABLE entity_deletions (
        kind TEXT NOT NULL,
        entity_id INTEGER NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (kind, entity_id)
    );
    DROP INDEX plex_index_path;
    DROP INDEX plex_index_basename;
    ALTER TABLE plex_index ADD COLUMN path_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE plex_index ADD COLUMN basename_key TEXT NOT NULL DEFAULT '';
    CREATE INDEX plex_index_path_key ON plex_index (path_key);
    CREATE INDEX plex_index_basename_key ON plex_index (basename_key);
    ALTER TABLE plex_items ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
    DELETE FROM plex_index;
    DELETE FROM plex_items;
    DELETE FROM kv WHERE key IN ('plex_index_refreshed_at', 'plex_index_full_at', 'plex_sections');
    """,
    # 6: reconciliation. Each run with its report (retention bounded, see
    # store/reconcile.py); what each linked Plex item looked like when a run last verified it
    # (its `updatedAt`, what the listing showed of our fields, what we had pushed, the drift
    # found), so the next run reads only items that changed; and which outages were
    # reconciled after they ended (those that ended before this version: none, '{}').
    """
    CREATE TABLE reconcile_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL,
        finished_at REAL,
        trigger TEXT NOT NULL,
        fix INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        results TEXT NOT NULL DEFAULT '{}',
        report TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX reconcile_runs_started ON reconcile_runs (started_at);
    CREATE TABLE plex_checks (
        rating_key INTEGER PRIMARY KEY,
        updated_at INTEGER,
        listing TEXT NOT NULL,
        pushed TEXT NOT NULL,
        drift TEXT NOT NULL DEFAULT '[]',
        settled INTEGER NOT NULL DEFAULT 1,
        checked_at REAL NOT NULL
    );
    ALTER TABLE outages ADD COLUMN reconciled TEXT;
    UPDATE outages SET reconciled = '{}' WHERE ended_at IS NOT NULL;
    """,
    # 7: linked scenes whose performers, studios, tags and groups are not recorded yet (links
    # made before version 5): the worker reads them from Stash in the background, so that a
    # deletion in Stash finds them without waiting for each scene's next sync.
    """
    CREATE TABLE entity_backfill (scene_id INTEGER PRIMARY KEY);
    INSERT OR IGNORE INTO entity_backfill (scene_id)
        SELECT DISTINCT scene_id FROM links
        WHERE scene_id NOT IN (SELECT scene_id FROM link_entities);
    """,
    # 8: a rating decided for Stash is recorded before Stash is written (so the hook of that
    # write finds it and causes no echo), marked as not yet written with the rating Stash
    # showed then: a run stopped between the two leaves the mark, and the next run that
    # meets the scene writes Stash then, instead of taking Stash's old rating for a change.
    """
    ALTER TABLE pull_state ADD COLUMN rating_stash_pending INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE pull_state ADD COLUMN rating_stash_before INTEGER;
    """,
    # 9: a smaller store (at 100,000 scenes these two tables were half of it). What each
    # scene showed is kept in its primary key's order only (WITHOUT ROWID: the key was
    # stored twice, as the rows and as their index). The index keeps a path once: Plex's
    # spelling (`path`) only where it differs from the key (NULL: the same); the unused
    # `basename` and `updated_at` go, and a plain index by item replaces the (item, path)
    # key that held every path a third time. Rows are copied in key order (packed pages),
    # and the index's in their order, which is the order of an item's files.
    """
    CREATE TABLE link_entities_v9 (
        kind TEXT NOT NULL,
        entity_id INTEGER NOT NULL,
        scene_id INTEGER NOT NULL,
        PRIMARY KEY (kind, entity_id, scene_id)
    ) WITHOUT ROWID;
    INSERT INTO link_entities_v9 (kind, entity_id, scene_id)
        SELECT kind, entity_id, scene_id FROM link_entities ORDER BY kind, entity_id, scene_id;
    DROP TABLE link_entities;
    ALTER TABLE link_entities_v9 RENAME TO link_entities;
    CREATE INDEX link_entities_scene ON link_entities (scene_id);
    CREATE TABLE plex_index_v9 (
        rating_key INTEGER NOT NULL,
        section_id INTEGER NOT NULL,
        path_key TEXT NOT NULL,
        basename_key TEXT NOT NULL,
        path TEXT,
        size INTEGER
    );
    INSERT INTO plex_index_v9 (rowid, rating_key, section_id, path_key, basename_key, path,
                               size)
        SELECT rowid, rating_key, section_id, path_key, basename_key, NULLIF(path, path_key),
               size
        FROM plex_index ORDER BY rowid;
    DROP TABLE plex_index;
    ALTER TABLE plex_index_v9 RENAME TO plex_index;
    CREATE INDEX plex_index_item ON plex_index (rating_key);
    CREATE INDEX plex_index_path_key ON plex_index (path_key);
    CREATE INDEX plex_index_basename_key ON plex_index (basename_key);
    """,
    # 10: writes to Plex that timed out and that Plex may still apply late, to be checked
    # (sync.settle): when to look, how many looks failed, and what each would make the item
    # show and when it timed out (JSON: {"shown": {key: [[print, epoch s]]}, "ours": {list:
    # [name]}}).
    # No index by time: rows live only from a timeout to its check, few even in a slow spell.
    """
    CREATE TABLE unsettled_writes (
        scene_id INTEGER NOT NULL,
        rating_key INTEGER NOT NULL,
        check_at REAL NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        written TEXT NOT NULL,
        PRIMARY KEY (scene_id, rating_key)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
