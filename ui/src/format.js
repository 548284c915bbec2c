// Plain-language text for the values the views return (times are epoch seconds).

export const REASONS = {
  retry: "retrying after an error",
  plex_down: "Plex is down",
  stash_down: "Stash is unreachable",
  auth: "Plex rejected the token",
  not_in_plex: "not in Plex yet",
  ambiguous: "ambiguous match",
  conflict: "several scenes, one Plex item",
  settings: "settings needed",
};

export function reasonText(reason) {
  return REASONS[reason] || reason || "";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

// The store parks a job that waits for a change (a fixed setting, Plex back, a new save) at
// due_at = 1e18 (store/holds.py PARKED): no moment, so it is never shown as a date.
export const PARKED = 1e18;
export const NEVER_BY_ITSELF = "when something changes";

export function when(epoch) {
  if (epoch === null || epoch === undefined || epoch === 0) return "—";
  if (epoch >= PARKED) return NEVER_BY_ITSELF;
  const date = new Date(epoch * 1000);
  return Number.isNaN(date.getTime()) ? "—" : date.toLocaleString();
}

// "1 scene", "3 scenes": the count with the noun in the right number (src/stash2plex/words.py).
export function plural(count, word, words) {
  return `${count} ${count === 1 ? word : words || `${word}s`}`;
}

// What each availability window of the outages view covers, in words.
export const WINDOW_WORDS = { "24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days" };

export function ago(epoch, now) {
  if (!epoch) return "never";
  return `${duration(Math.max(0, now - epoch))} ago`;
}

export function percent(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(2)} %`;
}
