// The scene page's Plex panel: a badge with the scene's Plex state, a link to the Plex item,
// and "Sync to Plex now" / "Preview".
import { reasonText, when } from "./format.js";
import { useTransport, useView } from "./hooks.js";
import { PluginApi, React } from "./react.js";

// While something is about to change, look often; once settled, rarely.
const BUSY_MS = 2000;
const SETTLED_MS = 15000;
const SETTLED = new Set(["in_sync", "not_linked", "failed"]);

export function badgeText(scene) {
  switch (scene.state) {
    case "in_sync":
      return "In sync";
    case "waiting":
      return `Waiting: ${reasonText(scene.reason)}`;
    case "queued":
      return "Queued";
    case "syncing":
      return "Syncing";
    case "failed":
      return "Failed";
    default:
      return "Not linked";
  }
}

const VARIANTS = {
  in_sync: "success",
  waiting: "warning",
  queued: "info",
  syncing: "info",
  failed: "danger",
  not_linked: "secondary",
};

export function PlexScenePanel({ sceneId }) {
  const { Badge, Button, Table } = PluginApi.libraries.Bootstrap;
  const transport = useTransport();
  const [settled, setSettled] = React.useState(false);
  const scene = useView(transport, "scene", { scene_id: sceneId }, settled ? SETTLED_MS : BUSY_MS);
  const [preview, setPreview] = React.useState(null);
  const [busy, setBusy] = React.useState(false);
  const [note, setNote] = React.useState(null);
  const data = scene.data;

  React.useEffect(() => {
    if (data) setSettled(SETTLED.has(data.state));
  }, [data && data.state]);

  async function syncNow() {
    setBusy(true);
    setNote(null);
    try {
      const result = await transport.action("sync_scene", { scene_id: sceneId });
      setNote(result.note || "Queued for Plex.");
      setSettled(false);
      scene.reload();
    } catch (e) {
      setNote(`Failed: ${e.message}`);
    }
    setBusy(false);
  }

  async function showPreview() {
    setBusy(true);
    setNote(null);
    try {
      setPreview(await transport.action("preview_scene", { scene_id: sceneId }));
    } catch (e) {
      setNote(`Preview failed: ${e.message}`);
    }
    setBusy(false);
  }

  return (
    <div className="s2p-scene" data-testid="stash2plex-scene">
      <span className="s2p-scene-label">Plex</span>{" "}
      {data ? (
        <Badge
          variant={VARIANTS[data.state] || "secondary"}
          data-testid="stash2plex-badge"
          data-state={data.state}
          title={data.error || ""}
        >
          {badgeText(data)}
        </Badge>
      ) : (
        <Badge variant="secondary">{scene.error ? "unavailable" : "…"}</Badge>
      )}
      {data && data.rating_key && (
        <span className="s2p-muted">
          {" "}
          ratingKey {data.rating_key}, synced {when(data.synced_at)}
          {data.plex_url && (
            <>
              {" "}
              <a href={data.plex_url} target="_blank" rel="noopener noreferrer" data-testid="plex-link">
                Open in Plex
              </a>
            </>
          )}
        </span>
      )}{" "}
      <Button size="sm" variant="primary" disabled={busy} onClick={syncNow} data-testid="sync-now">
        Sync to Plex now
      </Button>{" "}
      <Button size="sm" variant="secondary" disabled={busy} onClick={showPreview} data-testid="preview">
        Preview
      </Button>
      {data && data.error && <div className="s2p-detail s2p-muted">{data.error}</div>}
      {note && (
        <div className="s2p-note" data-testid="scene-note">
          {note}
        </div>
      )}
      {preview && (
        <div className="s2p-preview" data-testid="scene-preview" data-status={preview.status}>
          <div>
            Preview: <b>{preview.status}</b>
            {preview.note ? ` (${preview.note})` : ""}
          </div>
          {preview.changes.length > 0 && (
            <Table size="sm" className="s2p-table" variant="dark">
              <thead>
                <tr>
                  <th>field</th>
                  <th>in Plex now</th>
                  <th>from Stash</th>
                </tr>
              </thead>
              <tbody>
                {preview.changes.map((c) => (
                  <tr key={c.field}>
                    <td>{c.field}</td>
                    <td>{c.plex}</td>
                    <td>{c.stash}</td>
                  </tr>
                ))}
              </tbody>
            </Table>
          )}
        </div>
      )}
    </div>
  );
}
