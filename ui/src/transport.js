// How the views reach the Python side. One interface, two hosts:
// - inside Stash: the GraphQL mutation runPluginOperation on this plugin (Stash's login
//   protects it), through Stash's own Apollo client;
// - on `stash2plex serve`: its JSON API, with the bearer token (when set) and the CSRF token.
import operationDocument from "./graphql/operation.graphql";
import jobDocument from "./graphql/job.graphql";
import taskDocument from "./graphql/task.graphql";

export const PLUGIN_ID = "Stash2Plex";

function apolloMessage(error) {
  const first = error && error.graphQLErrors && error.graphQLErrors[0];
  return (first && first.message) || (error && error.message) || String(error);
}

export function stashTransport(client, gql) {
  const operation = gql(operationDocument);
  const task = gql(taskDocument);
  const jobQuery = gql(jobDocument);
  async function call(args) {
    try {
      const result = await client.mutate({
        mutation: operation,
        variables: { plugin_id: PLUGIN_ID, args: { mode: "operation", ...args } },
        fetchPolicy: "no-cache",
      });
      return result.data.runPluginOperation;
    } catch (error) {
      throw new Error(apolloMessage(error));
    }
  }
  return {
    host: "stash",
    view: (name, params = {}) => call({ view: name, ...params }),
    action: (name, params = {}) => call({ action: name, ...params }),
    async task(taskName) {
      try {
        const result = await client.mutate({
          mutation: task,
          variables: { plugin_id: PLUGIN_ID, task_name: taskName },
          fetchPolicy: "no-cache",
        });
        return result.data.runPluginTask;
      } catch (error) {
        throw new Error(apolloMessage(error));
      }
    },
    // The job a task runs as in Stash's job queue (null once Stash has forgotten it).
    async job(id) {
      try {
        const result = await client.query({ query: jobQuery, variables: { id }, fetchPolicy: "no-cache" });
        return result.data.findJob;
      } catch (error) {
        throw new Error(apolloMessage(error));
      }
    },
    sceneLink: (sceneId) => `/scenes/${sceneId}`,
  };
}

const TOKEN_KEY = "stash2plex.token";

export class AuthRequired extends Error {}

export function httpTransport(config) {
  const base = config.apiBase || "";
  function headers(extra) {
    const token = window.sessionStorage.getItem(TOKEN_KEY);
    return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
  }
  async function parse(response) {
    if (response.status === 401) {
      window.sessionStorage.removeItem(TOKEN_KEY);
      throw new AuthRequired("the service needs its token");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }
  return {
    host: "dashboard",
    tokenRequired: !!config.tokenRequired,
    hasToken: () => !!window.sessionStorage.getItem(TOKEN_KEY),
    setToken: (token) => window.sessionStorage.setItem(TOKEN_KEY, token.trim()),
    async view(name, params = {}) {
      const query = new URLSearchParams(params).toString();
      const url = `${base}/api/views/${encodeURIComponent(name)}${query ? `?${query}` : ""}`;
      return parse(await fetch(url, { headers: headers({}), credentials: "same-origin" }));
    },
    async action(name, params = {}) {
      const response = await fetch(`${base}/api/actions/${encodeURIComponent(name)}`, {
        method: "POST",
        credentials: "same-origin",
        headers: headers({ "Content-Type": "application/json", "X-CSRF-Token": config.csrfToken }),
        body: JSON.stringify(params),
      });
      return parse(response);
    },
    task: null,
    sceneLink: () => null,
  };
}
