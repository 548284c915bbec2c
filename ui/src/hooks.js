import { React } from "./react.js";
import { AuthRequired, httpTransport, stashTransport } from "./transport.js";
import { PluginApi } from "./react.js";

// The transport for this host: the dashboard host announces itself; inside Stash, Stash's own
// Apollo client (rendered under its ApolloProvider) carries the GraphQL mutation.
export function useTransport() {
  const dashboard = window.Stash2PlexDashboard;
  if (dashboard) {
    if (!dashboard.transport) dashboard.transport = httpTransport(dashboard.config);
    return dashboard.transport;
  }
  const Apollo = PluginApi.libraries.Apollo;
  const client = Apollo.useApolloClient();
  return React.useMemo(() => stashTransport(client, Apollo.gql), [client]);
}

// Load a view now and every `interval` ms while mounted; `reload()` asks again at once.
export function useView(transport, name, params, interval) {
  const [state, setState] = React.useState({ data: null, error: null, auth: false });
  const key = JSON.stringify(params || {});
  const [tick, setTick] = React.useState(0);
  React.useEffect(() => {
    let live = true;
    let timer = null;
    async function load() {
      try {
        const data = await transport.view(name, JSON.parse(key));
        if (live) setState({ data, error: null, auth: false });
      } catch (error) {
        if (live) setState((s) => ({ ...s, error: error.message, auth: error instanceof AuthRequired }));
      }
      if (live && interval) timer = window.setTimeout(load, interval);
    }
    load();
    return () => {
      live = false;
      if (timer) window.clearTimeout(timer);
    };
  }, [transport, name, key, interval, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}
