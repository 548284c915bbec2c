// Every module renders with the host's React: Stash's own (PluginApi.React) inside Stash, the
// dashboard host's on `stash2plex serve`. Bundling a second React would break hooks.
export const PluginApi = window.PluginApi;
export const React = PluginApi.React;
