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
    studio { id name parent_studio { id name } }
    performers { id name image_path }
    tags { id name parents { name parents { name parents { name } } } }
    groups { group { id name } scene_index }
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

ALL_DOCUMENTS: dict[str, str] = {
    "FindScene": FIND_SCENE,
    "FindScenes": FIND_SCENES,
    "FindSceneIds": FIND_SCENE_IDS,
    "PluginSettings": PLUGIN_SETTINGS,
    "ApiKey": API_KEY,
    "Version": VERSION,
}
