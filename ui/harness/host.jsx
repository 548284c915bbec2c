// A stand-in for Stash's web UI, for the browser tests: it provides window.PluginApi as Stash
// v0.30 does (React 17, ReactDOM, react-bootstrap, react-router-dom 5 and @apollo/client from
// their npm packages; register.route; patch.before/instead/after with Stash's documented
// semantics; a components registry) and renders the pages the plugin patches: the navigation
// bar (MainNavBar.UtilityItems), plugin routes (PluginRoutes) and a scene page (ScenePage,
// ScenePage.TabContent). GraphQL goes to the Stash emulator's /graphql, which runs the plugin
// through the plugin runner for runPluginOperation. The plugin's files are loaded from
// /plugin/<ID>/javascript and /plugin/<ID>/css, the routes Stash serves them from.
import * as Apollo from "@apollo/client";
import React from "react";
import * as Bootstrap from "react-bootstrap";
import ReactDOM from "react-dom";
import * as ReactRouterDOM from "react-router-dom";

const PLUGIN_ID = "Stash2Plex";

// ----------------------------------------------------------------- patching, as Stash does
const beforeFns = {};
const insteadFns = {};
const afterFns = {};
const components = {};

function add(table, name, fn) {
  (table[name] = table[name] || []).push(fn);
}

function runInstead(fns, target, thisArg, args) {
  // Each replacement gets the original args plus the next function in the chain.
  const chain = (index) => (index < fns.length ? (...a) => fns[index].apply(thisArg, [...a, chain(index + 1)]) : target);
  return fns[0].apply(thisArg, [...args, chain(1)]);
}

function patchFunction(name, fn) {
  return function patched(...callArgs) {
    let args = callArgs;
    for (const before of beforeFns[name] || []) args = before.apply(this, args);
    let result = insteadFns[name] ? runInstead(insteadFns[name], fn, this, args) : fn.apply(this, args);
    for (const after of afterFns[name] || []) result = after.apply(this, [...args, result]);
    return result;
  };
}

function registerComponent(name, fn) {
  if (components[name]) throw new Error(`Component ${name} has already been registered`);
  components[name] = fn;
  return fn;
}

function patchComponent(name, fn) {
  return registerComponent(name, patchFunction(name, fn));
}

function patchContainerComponent(name) {
  return patchComponent(name, (props) => <>{props.children}</>);
}

function registerRoute(path, component) {
  add(beforeFns, "PluginRoutes", (props) => [
    {
      children: (
        <>
          {props.children}
          <ReactRouterDOM.Route path={path} component={component} />
        </>
      ),
    },
  ]);
}

async function loadComponents(list) {
  await Promise.all(list.map((load) => load()));
}

window.PluginApi = {
  React,
  ReactDOM,
  GQL: {},
  libraries: { ReactRouterDOM, Bootstrap, Apollo },
  register: { route: registerRoute, component: registerComponent },
  loadableComponents: {},
  components,
  utils: { loadComponents },
  hooks: {
    useLoadComponents: () => false,
  },
  patch: {
    before: (name, fn) => add(beforeFns, name, fn),
    instead: (name, fn) => add(insteadFns, name, fn),
    after: (name, fn) => add(afterFns, name, fn),
  },
};

// ----------------------------------------------------------------- the pages
const MainNavBarUtilityItems = patchContainerComponent("MainNavBar.UtilityItems");
const PluginRoutes = patchContainerComponent("PluginRoutes");
const ScenePageTabContent = patchContainerComponent("ScenePage.TabContent");

const FIND_SCENE = Apollo.gql`
  query FindScene($id: ID!) {
    findScene(id: $id) { id title files { path } }
  }
`;

const ScenePage = patchComponent("ScenePage", (props) => {
  const { Nav, Tab } = Bootstrap;
  const { scene } = props;
  return (
    <div className="scene-tabs" data-testid="scene-page" data-scene={scene.id}>
      <h3 className="scene-header">{scene.title || `Scene ${scene.id}`}</h3>
      <Tab.Container defaultActiveKey="scene-details-panel">
        <Nav variant="tabs">
          <Nav.Item>
            <Nav.Link eventKey="scene-details-panel">Details</Nav.Link>
          </Nav.Item>
          <Nav.Item>
            <Nav.Link eventKey="scene-file-info-panel">File Info</Nav.Link>
          </Nav.Item>
        </Nav>
        <Tab.Content>
          <ScenePageTabContent {...props}>
            <Tab.Pane eventKey="scene-details-panel">
              <p>{scene.title}</p>
            </Tab.Pane>
            <Tab.Pane eventKey="scene-file-info-panel">
              {scene.files.map((f) => (
                <div key={f.path}>{f.path}</div>
              ))}
            </Tab.Pane>
          </ScenePageTabContent>
        </Tab.Content>
      </Tab.Container>
    </div>
  );
});

function SceneLoader({ match }) {
  const { data, loading, error } = Apollo.useQuery(FIND_SCENE, { variables: { id: match.params.id } });
  if (loading) return <div>Loading…</div>;
  if (error) return <div>{error.message}</div>;
  if (!data.findScene) return <div>No scene found with id {match.params.id}.</div>;
  return <ScenePage scene={data.findScene} />;
}

function App({ client }) {
  const { BrowserRouter, Link, Route, Switch } = ReactRouterDOM;
  return (
    <Apollo.ApolloProvider client={client}>
      <BrowserRouter>
        <nav className="navbar navbar-dark bg-dark" data-testid="main-nav">
          <Link className="navbar-brand" to="/">
            Stash
          </Link>
          <div className="navbar-buttons d-flex">
            <MainNavBarUtilityItems />
          </div>
        </nav>
        <div className="main container-fluid">
          <Switch>
            <Route path="/scenes/:id" component={SceneLoader} />
            <Route path="/plugin">
              <PluginRoutes />
            </Route>
            <Route exact path="/">
              <div>Home</div>
            </Route>
          </Switch>
        </div>
      </BrowserRouter>
    </Apollo.ApolloProvider>
  );
}

function load(tag, attributes) {
  return new Promise((resolve, reject) => {
    const element = document.createElement(tag);
    Object.assign(element, attributes, { onload: resolve, onerror: () => reject(new Error(`cannot load ${attributes.src || attributes.href}`)) });
    document.head.appendChild(element);
  });
}

async function main() {
  await load("link", { rel: "stylesheet", href: `/plugin/${PLUGIN_ID}/css` });
  await load("script", { src: `/plugin/${PLUGIN_ID}/javascript` });
  const client = new Apollo.ApolloClient({
    link: new Apollo.HttpLink({ uri: "/graphql" }),
    cache: new Apollo.InMemoryCache(),
  });
  ReactDOM.render(<App client={client} />, document.getElementById("root"));
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.getElementById("root").textContent = `harness failed: ${error.message}`;
});
