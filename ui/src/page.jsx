// The Plex page: queue, holds, ramp, outages, waiting scenes, dead letters, reconcile, tasks.
import { OutageTimeline } from "./chart.jsx";
import { WINDOW_WORDS, ago, duration, percent, plural, reasonText, when } from "./format.js";
import { useTransport, useView } from "./hooks.js";
import { PluginApi, React } from "./react.js";

const REFRESH_MS = 5000;
const JOB_POLL_MS = 1000;
const JOB_DONE = new Set(["FINISHED", "FAILED", "CANCELLED"]);
const TASKS = [
  "Sync All Scenes",
  "Sync Recent Scenes",
  "Process Queue",
  "Reconcile and Repair",
  "Health Check",
  "Recover Outage Jobs",
  "Diagnose",
];

function bootstrap() {
  return PluginApi.libraries.Bootstrap;
}

function Stat({ label, value, testid, variant }) {
  return (
    <div className={`s2p-stat${variant ? ` s2p-stat-${variant}` : ""}`}>
      <div className="s2p-stat-value" data-testid={testid}>
        {value}
      </div>
      <div className="s2p-stat-label">{label}</div>
    </div>
  );
}

function Section({ title, children, testid }) {
  const { Card } = bootstrap();
  return (
    <Card className="s2p-section" data-testid={testid}>
      <Card.Body>
        <h5 className="s2p-section-title">{title}</h5>
        {children}
      </Card.Body>
    </Card>
  );
}

function Confirm({ ask, onCancel }) {
  const { Modal, Button } = bootstrap();
  if (!ask) return null;
  return (
    <Modal show onHide={onCancel} data-testid="confirm-dialog">
      <Modal.Header closeButton>
        <Modal.Title>{ask.title}</Modal.Title>
      </Modal.Header>
      <Modal.Body>{ask.body}</Modal.Body>
      <Modal.Footer>
        <Button variant="secondary" onClick={onCancel}>
          Cancel
        </Button>
        <Button variant={ask.variant || "primary"} onClick={ask.onConfirm} data-testid="confirm-yes">
          {ask.confirm}
        </Button>
      </Modal.Footer>
    </Modal>
  );
}

function Overview({ data }) {
  const { Badge } = bootstrap();
  const q = data.queue;
  const breaker = data.breaker;
  const variant = { closed: "success", open: "danger", half_open: "warning" }[breaker.state];
  return (
    <Section title="Queue" testid="section-queue">
      <div className="s2p-stats">
        <Stat label="pending" value={q.pending} testid="count-pending" />
        <Stat label="in progress" value={q.in_progress} testid="count-in-progress" />
        <Stat label="waiting" value={q.waiting_total} testid="count-waiting" />
        <Stat label="done" value={q.done} testid="count-done" />
        <Stat
          label="dead letters"
          value={data.dead_letters.total}
          testid="count-dead-letters"
          variant={data.dead_letters.total ? "bad" : null}
        />
        <Stat label="linked scenes" value={data.linked_scenes} testid="count-linked" />
      </div>
      {Object.keys(q.waiting).length > 0 && (
        <div className="s2p-reasons" data-testid="waiting-reasons">
          {Object.entries(q.waiting).map(([reason, n]) => (
            <span key={reason} className="s2p-reason" data-reason={reason}>
              {reasonText(reason)}: <b>{n}</b>
            </span>
          ))}
        </div>
      )}
      <div className="s2p-holds">
        <span>
          Circuit breaker{" "}
          <Badge variant={variant} data-testid="breaker-state">
            {breaker.state.replace("_", "-")}
          </Badge>
          {breaker.since && (
            <span className="s2p-muted">
              {" "}
              since {when(breaker.since)} ({duration(breaker.open_seconds)})
              {breaker.next_probe_at ? `, next probe ${when(breaker.next_probe_at)}` : ""}
            </span>
          )}
        </span>
        <span>
          Worker{" "}
          <Badge variant={data.worker_running ? "success" : "secondary"} data-testid="worker-state">
            {data.worker_running ? "running" : "idle"}
          </Badge>
        </span>
        <span className="s2p-muted">last sync {ago(data.last_sync_at, data.now)}</span>
      </div>
      {data.ramp.active && (
        <div className="s2p-ramp" data-testid="ramp">
          Recovering gently: {Math.round(data.ramp.progress * 100)} % of the ramp, {data.ramp.rate_per_second}{" "}
          of {data.ramp.full_rate_per_second} jobs/s
          <div className="s2p-bar">
            <div style={{ width: `${Math.round(data.ramp.progress * 100)}%` }} />
          </div>
        </div>
      )}
      {data.dead_letters.total > 0 && (
        <div className="s2p-reasons">
          {Object.entries(data.dead_letters.by_class).map(([cls, n]) => (
            <span key={cls} className="s2p-reason s2p-reason-bad">
              {cls}: <b>{n}</b>
            </span>
          ))}
        </div>
      )}
    </Section>
  );
}

function Outages({ transport }) {
  const { Table } = bootstrap();
  const { data, error } = useView(transport, "outages", {}, REFRESH_MS * 6);
  if (!data) return <Section title="Plex availability">{error || "Loading…"}</Section>;
  return (
    <Section title="Plex availability" testid="section-outages">
      <div className="s2p-muted" data-testid="availability-note">
        Availability is the share of each window in which Plex answered, counted from when
        Stash2Plex began watching
        {data.watched_since ? ` (${when(data.watched_since)})` : " (nothing watched yet)"}.
      </div>
      <Table size="sm" className="s2p-table" variant="dark">
        <thead>
          <tr>
            <th>window</th>
            <th>availability</th>
            <th>outages</th>
            <th>downtime</th>
            <th>MTTR</th>
            <th>MTBF</th>
          </tr>
        </thead>
        <tbody>
          {Object.entries(data.windows).map(([label, w]) => (
            <tr key={label} data-window={label}>
              <td data-testid="window-label">
                {WINDOW_WORDS[label] || label}
                {w.observed_since && w.observed_since > data.now - w.seconds + 1
                  ? ` (watched since ${when(w.observed_since)})`
                  : ""}
              </td>
              <td>{percent(w.availability_pct)}</td>
              <td>{w.outages}</td>
              <td>{duration(w.downtime_s)}</td>
              <td>{duration(w.mttr_s)}</td>
              <td>{duration(w.mtbf_s)}</td>
            </tr>
          ))}
        </tbody>
      </Table>
      <OutageTimeline timeline={data.timeline} />
    </Section>
  );
}

function SceneRef({ transport, sceneId }) {
  const href = transport.sceneLink(sceneId);
  const { Link } = (PluginApi.libraries.ReactRouterDOM || {});
  if (href && Link) return <Link to={href}>scene {sceneId}</Link>;
  return <span>scene {sceneId}</span>;
}

function Waiting({ transport }) {
  const { Table } = bootstrap();
  const { data, error } = useView(transport, "waiting", { limit: 50 }, REFRESH_MS);
  if (!data) return <Section title="Waiting scenes">{error || "Loading…"}</Section>;
  return (
    <Section title={`Waiting scenes (${data.total})`} testid="section-waiting">
      {data.total === 0 ? (
        <div className="s2p-muted">Nothing is waiting.</div>
      ) : (
        <Table size="sm" className="s2p-table" variant="dark">
          <thead>
            <tr>
              <th>scene</th>
              <th>why</th>
              <th>tries</th>
              <th>next look</th>
              <th>details</th>
            </tr>
          </thead>
          <tbody>
            {data.scenes.map((s) => (
              <tr key={s.scene_id} data-testid="waiting-row" data-scene={s.scene_id}>
                <td>
                  <SceneRef transport={transport} sceneId={s.scene_id} />
                </td>
                <td>{reasonText(s.reason)}</td>
                <td>{s.attempts}</td>
                <td>{when(s.due_at)}</td>
                <td className="s2p-detail">
                  {s.error}
                  {s.candidates.length > 0 && (
                    <ul>
                      {s.candidates.map((c) => (
                        <li key={`${c.rating_key}:${c.path}`}>
                          ratingKey {c.rating_key}: {c.path}
                        </li>
                      ))}
                    </ul>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </Table>
      )}
    </Section>
  );
}

function DeadLetters({ transport, onChanged }) {
  const { Table, Button } = bootstrap();
  const { data, error, reload } = useView(transport, "dead_letters", { limit: 100 }, REFRESH_MS);
  const [ask, setAsk] = React.useState(null);
  const [note, setNote] = React.useState(null);

  function act(name, params, describe) {
    return async () => {
      setAsk(null);
      try {
        const result = await transport.action(name, params);
        setNote(describe(result));
      } catch (e) {
        setNote(`Failed: ${e.message}`);
      }
      reload();
      onChanged();
    };
  }
  const retry = (ids, what) =>
    setAsk({
      title: "Retry dead letters",
      body: `Queue ${what} again for Plex?`,
      confirm: "Retry",
      onConfirm: act("retry_dead_letters", ids ? { ids } : {}, (r) => `Re-queued ${plural(r.requeued, "scene")}.`),
    });
  const purge = (ids, what) =>
    setAsk({
      title: "Purge dead letters",
      body: `Remove ${what} without retrying? This cannot be undone.`,
      confirm: "Purge",
      variant: "danger",
      onConfirm: act("purge_dead_letters", ids ? { ids } : { days: 0 }, (r) => `Removed ${plural(r.purged, "dead letter")}.`),
    });

  if (!data) return <Section title="Dead letters">{error || "Loading…"}</Section>;
  return (
    <Section title={`Dead letters (${data.total})`} testid="section-dead-letters">
      <Confirm ask={ask} onCancel={() => setAsk(null)} />
      {note && (
        <div className="s2p-note" data-testid="dead-letter-note">
          {note}
        </div>
      )}
      {data.total === 0 ? (
        <div className="s2p-muted">No dead letters.</div>
      ) : (
        <>
          <div className="s2p-actions">
            <Button size="sm" onClick={() => retry(null, "every dead-lettered scene")}>
              Retry all
            </Button>{" "}
            <Button size="sm" variant="danger" onClick={() => purge(null, "every dead letter")}>
              Purge all
            </Button>
          </div>
          <Table size="sm" className="s2p-table" variant="dark">
            <thead>
              <tr>
                <th>scene</th>
                <th>class</th>
                <th>reason</th>
                <th>tries</th>
                <th>failed</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {data.letters.map((d) => (
                <tr key={d.id} data-testid="dead-letter-row" data-scene={d.scene_id} data-id={d.id}>
                  <td>
                    <SceneRef transport={transport} sceneId={d.scene_id} />
                  </td>
                  <td>{d.error_class}</td>
                  <td className="s2p-detail">{d.message}</td>
                  <td>{d.attempts}</td>
                  <td>{when(d.failed_at)}</td>
                  <td className="s2p-nowrap">
                    <Button size="sm" onClick={() => retry([d.id], `scene ${d.scene_id}`)} data-testid="retry-letter">
                      Retry
                    </Button>{" "}
                    <Button
                      size="sm"
                      variant="outline-danger"
                      onClick={() => purge([d.id], `the dead letter of scene ${d.scene_id}`)}
                      data-testid="purge-letter"
                    >
                      Purge
                    </Button>
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </>
      )}
    </Section>
  );
}

function Reconcile({ data }) {
  const r = data.reconcile;
  return (
    <Section title="Reconciliation" testid="section-reconcile">
      {r.ran ? (
        <div data-testid="reconcile-last">
          Last run {when(r.finished_at || r.started_at)}
          {r.trigger ? ` (${r.trigger === "schedule" ? "scheduled" : r.trigger})` : ""}:{" "}
          {r.summary ||
            Object.entries(r.results || {})
              .map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`)
              .join(", ")}
        </div>
      ) : (
        <div className="s2p-muted" data-testid="reconcile-none">
          No reconcile yet.
        </div>
      )}
    </Section>
  );
}

// What became of a task's job, in one sentence (Stash's job status and error).
export function jobWords(name, job) {
  if (!job) return `"${name}" has ended; Stash no longer lists its job (see Settings > Logs).`;
  switch (job.status) {
    case "READY":
      return `"${name}" is queued in Stash and waits for the job before it.`;
    case "RUNNING":
    case "STOPPING":
      return `"${name}" is running${job.progress ? ` (${Math.round(job.progress * 100)} %)` : ""}…`;
    case "FINISHED":
      return `"${name}" finished without a problem (details in Settings > Logs).`;
    case "CANCELLED":
      return `"${name}" was cancelled.`;
    default:
      return `"${name}" failed: ${job.error || "see Settings > Logs"}`;
  }
}

function Tasks({ transport, onChanged }) {
  const { Button } = bootstrap();
  const [note, setNote] = React.useState(null);
  const live = React.useRef(true);
  React.useEffect(() => () => {
    live.current = false;
  }, []);
  if (!transport.task) return null;
  const say = (text, state) => live.current && setNote({ text, state });
  async function follow(name, id) {
    // Poll Stash's job queue until the job ends, so the click always ends in a sentence.
    for (;;) {
      let job;
      try {
        job = transport.job ? await transport.job(id) : null;
      } catch (e) {
        say(`"${name}" started as Stash job ${id}; its progress could not be read: ${e.message}`, "unknown");
        return;
      }
      if (!live.current) return;
      const state = job ? job.status.toLowerCase() : "ended";
      say(jobWords(name, job), state);
      if (!job || JOB_DONE.has(job.status)) {
        onChanged();
        return;
      }
      await new Promise((resolve) => window.setTimeout(resolve, JOB_POLL_MS));
    }
  }
  async function run(name) {
    say(`Starting "${name}"…`, "starting");
    let id;
    try {
      id = await transport.task(name);
    } catch (e) {
      say(`"${name}" could not be started: ${e.message}`, "error");
      return;
    }
    say(`"${name}" started as Stash job ${id}.`, "started");
    await follow(name, id);
  }
  return (
    <Section title="Tasks" testid="section-tasks">
      <div className="s2p-actions">
        {TASKS.map((name) => (
          <Button key={name} size="sm" variant="secondary" onClick={() => run(name)} data-testid="task-button">
            {name}
          </Button>
        ))}
      </div>
      {note && (
        <div className="s2p-note" data-testid="task-note" data-state={note.state}>
          {note.text}
        </div>
      )}
    </Section>
  );
}

function TokenForm({ transport, onDone }) {
  const { Button } = bootstrap();
  const [value, setValue] = React.useState("");
  return (
    <form
      className="s2p-token"
      onSubmit={(e) => {
        e.preventDefault();
        transport.setToken(value);
        onDone();
      }}
    >
      <label htmlFor="s2p-token">This service needs its token:</label>{" "}
      <input id="s2p-token" type="password" value={value} onChange={(e) => setValue(e.target.value)} />{" "}
      <Button type="submit" size="sm">
        Open
      </Button>
    </form>
  );
}

export function PlexPage() {
  const { Alert } = bootstrap();
  const transport = useTransport();
  const overview = useView(transport, "overview", {}, REFRESH_MS);
  const data = overview.data;
  if (overview.auth || (transport.tokenRequired && !transport.hasToken())) {
    return (
      <div className="s2p-page">
        <h2>Stash2Plex</h2>
        <TokenForm transport={transport} onDone={overview.reload} />
      </div>
    );
  }
  return (
    <div className="s2p-page" data-testid="stash2plex-page" data-host={transport.host}>
      <h2 className="s2p-title">
        Plex <span className="s2p-muted s2p-small">Stash2Plex</span>
      </h2>
      {overview.error && <Alert variant="danger">{overview.error}</Alert>}
      {data && data.paused && <Alert variant="danger">Paused: {data.paused}</Alert>}
      {data && data.blocked && !data.paused && <Alert variant="warning">{data.blocked}</Alert>}
      {!data ? (
        <div className="s2p-muted">Loading…</div>
      ) : (
        <>
          <Overview data={data} />
          <Outages transport={transport} />
          <Waiting transport={transport} />
          <DeadLetters transport={transport} onChanged={overview.reload} />
          <Reconcile data={data} />
          <Tasks transport={transport} onChanged={overview.reload} />
        </>
      )}
    </div>
  );
}
