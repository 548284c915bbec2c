// Stash2Plex's UI: registered through Stash's PluginApi (or the dashboard host's stand-in).
// - a "Plex" page at /plugin/stash2plex, linked from the navigation bar;
// - a Plex panel on every scene page (patching ScenePage.TabContent).
import { PlexPage } from "./page.jsx";
import { PluginApi, React } from "./react.js";
import { PlexScenePanel } from "./scene.jsx";
import "./style.css";

export const ROUTE = "/plugin/stash2plex";

PluginApi.register.route(ROUTE, PlexPage);

PluginApi.patch.before("MainNavBar.UtilityItems", function (props) {
  const { NavLink } = PluginApi.libraries.ReactRouterDOM;
  const { Button } = PluginApi.libraries.Bootstrap;
  return [
    {
      children: (
        <>
          {props.children}
          <NavLink className="nav-utility" exact to={ROUTE} data-testid="stash2plex-nav">
            <Button className="minimal d-flex align-items-center h-100" title="Plex (Stash2Plex)">
              Plex
            </Button>
          </NavLink>
        </>
      ),
    },
  ];
});

PluginApi.patch.before("ScenePage.TabContent", function (props) {
  if (!props || !props.scene) return [props];
  return [
    {
      ...props,
      children: (
        <>
          <PlexScenePanel sceneId={Number(props.scene.id)} />
          {props.children}
        </>
      ),
    },
  ];
});
