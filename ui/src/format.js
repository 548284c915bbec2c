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

export function when(epoch) {
  if (!epoch) return "—";
  return new Date(epoch * 1000).toLocaleString();
}

export function ago(epoch, now) {
  if (!epoch) return "never";
  return `${duration(Math.max(0, now - epoch))} ago`;
}

export function percent(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(2)} %`;
}
