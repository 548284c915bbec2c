"""Every GraphQL document Stash2Plex sends to Stash.

They live in one module so that a contract test can validate each of them against Stash's
real schema, and so that the Stash emulator answers exactly what the client asks.
Fields are always requested explicitly (never a generated "all fields" fragment): heavy
resolvers such as markers or play history would slow every call.
"""

SCENE_FIELDS = """
    id
    title
    code
    details
    date
    rating100
    organized
    created_at
    updated_at
    urls
    files { id path basename size duration }
    paths { screenshot }
    studio { id name details image_path parent_studio { id name details image_path } }
    performers { id name image_path }
    tags { id name }
    groups { group { id name synopsis front_image_path } scene_index }
"""

FIND_SCENE = (
    """
query FindScene($id: ID!) {
  findScene(id: $id) {"""
    + SCENE_FIELDS
    + """  }
}
"""
)

FIND_SCENES = (
    """
query FindScenes($filter: FindFilterType, $scene_filter: SceneFilterType) {
  findScenes(filter: $filter, scene_filter: $scene_filter) {
    count
    scenes {"""
    + SCENE_FIELDS
    + """    }
  }
}
"""
)

# The scenes of a claimed batch in one request (Stash answers every id asked, or an error
# naming the first that does not exist: the client then asks again without it).
FIND_SCENES_BY_IDS = (
    """
query FindScenesByIds($ids: [ID!]) {
  findScenes(ids: $ids) {
    count
    scenes {"""
    + SCENE_FIELDS
    + """    }
  }
}
"""
)

# Only ids: used to expand a performer/studio/tag/group change into scene jobs, and to check
# that scenes still exist, without pulling their metadata.
FIND_SCENE_IDS = """
query FindSceneIds($filter: FindFilterType, $scene_filter: SceneFilterType) {
  findScenes(filter: $filter, scene_filter: $scene_filter) {
    count
    scenes { id }
  }
}
"""

# Which scenes changed since a time, with that time: "Sync Recent Scenes" and the reconcile
# after an outage filter on `updated_at` (compared by Stash as text, see stash.py).
FIND_SCENE_UPDATES = """
query FindSceneUpdates($filter: FindFilterType, $scene_filter: SceneFilterType) {
  findScenes(filter: $filter, scene_filter: $scene_filter) {
    count
    scenes { id updated_at }
  }
}
"""

# Which scenes hold a file: for a Plex item holding files that are not the scene's own (Plex
# stacked two scenes' files into one item), to tell a conflict from a file Stash does not have.
FIND_SCENE_FILES = """
query FindSceneFiles($filter: FindFilterType, $scene_filter: SceneFilterType) {
  findScenes(filter: $filter, scene_filter: $scene_filter) {
    count
    scenes { id files { path basename size } }
  }
}
"""

# The whole tag hierarchy, read once per run when tag filters are set: any depth, and tags
# with several parents (a scene's own tags carry only their ids and names).
FIND_TAG_HIERARCHY = """
query FindTagHierarchy($filter: FindFilterType) {
  findTags(filter: $filter) {
    count
    tags { id name parents { id } }
  }
}
"""

PLUGIN_SETTINGS = """
query PluginSettings($include: [ID!]) {
  configuration {
    plugins(include: $include)
  }
}
"""

API_KEY = """
query ApiKey {
  configuration {
    general { apiKey }
  }
}
"""

VERSION = """
query Version {
  version { version hash build_time }
}
"""

# ----------------------------------------------------------------------------- Plex -> Stash
# What a pull compares against: each scene's plays, resume point and rating (with the time of
# its last edit, which is when a rating changed at the latest).
SCENES_PLAY_STATE = """
query ScenesPlayState($ids: [ID!]) {
  findScenes(ids: $ids) {
    count
    scenes { id rating100 updated_at resume_time play_count play_history }
  }
}
"""

SCENE_PLAY_STATE = """
query ScenePlayState($id: ID!) {
  findScene(id: $id) { id rating100 updated_at resume_time play_count play_history }
}
"""

# Stash v0.30 fires no hook for plays or activity, and neither touches the scene's updated_at.
SCENE_ADD_PLAY = """
mutation SceneAddPlay($id: ID!, $times: [Timestamp!]) {
  sceneAddPlay(id: $id, times: $times) { count history }
}
"""

SCENE_SAVE_ACTIVITY = """
mutation SceneSaveActivity($id: ID!, $resume_time: Float) {
  sceneSaveActivity(id: $id, resume_time: $resume_time)
}
"""

# A rating goes through sceneUpdate, which fires Scene.Update.Post: see sync/ratings.py.
SCENE_SET_RATING = """
mutation SceneSetRating($input: SceneUpdateInput!) {
  sceneUpdate(input: $input) { id rating100 updated_at }
}
"""

ALL_DOCUMENTS: dict[str, str] = {
    "FindScene": FIND_SCENE,
    "FindScenes": FIND_SCENES,
    "FindSceneIds": FIND_SCENE_IDS,
    "FindSceneFiles": FIND_SCENE_FILES,
    "FindSceneUpdates": FIND_SCENE_UPDATES,
    "FindTagHierarchy": FIND_TAG_HIERARCHY,
    "PluginSettings": PLUGIN_SETTINGS,
    "ApiKey": API_KEY,
    "Version": VERSION,
    "ScenesPlayState": SCENES_PLAY_STATE,
    "ScenePlayState": SCENE_PLAY_STATE,
    "SceneAddPlay": SCENE_ADD_PLAY,
    "SceneSaveActivity": SCENE_SAVE_ACTIVITY,
    "SceneSetRating": SCENE_SET_RATING,
}
