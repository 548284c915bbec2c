// The outage timeline: Plex up (1) or down (0) over the last 30 days, as a stepped line drawn
// by uPlot (a small, fast canvas chart library).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { React } from "./react.js";

export function timelineSeries(timeline) {
  const xs = [timeline.since];
  const ys = [1];
  const outages = [...timeline.outages].sort((a, b) => a.started_at - b.started_at);
  for (const outage of outages) {
    const start = Math.max(outage.started_at, timeline.since);
    const end = outage.ended_at === null ? timeline.until : outage.ended_at;
    xs.push(start, end);
    ys.push(0, outage.ended_at === null ? 0 : 1);
  }
  xs.push(timeline.until);
  ys.push(ys[ys.length - 1]);
  return [xs, ys];
}

export function OutageTimeline({ timeline }) {
  const ref = React.useRef(null);
  React.useEffect(() => {
    const element = ref.current;
    if (!element) return undefined;
    const width = Math.max(320, element.clientWidth || 640);
    const chart = new uPlot(
      {
        width,
        height: 140,
        legend: { show: false },
        cursor: { show: false },
        scales: { y: { range: [-0.1, 1.1] } },
        axes: [
          { stroke: "#9aa4ad", grid: { stroke: "rgba(154,164,173,0.15)" } },
          {
            stroke: "#9aa4ad",
            grid: { stroke: "rgba(154,164,173,0.15)" },
            splits: () => [0, 1],
            values: (_, ticks) => ticks.map((t) => (t === 1 ? "up" : "down")),
            size: 50,
          },
        ],
        series: [
          {},
          {
            label: "Plex",
            stroke: "#3fb950",
            fill: "rgba(63,185,80,0.15)",
            width: 2,
            paths: uPlot.paths.stepped({ align: 1 }),
          },
        ],
      },
      timelineSeries(timeline),
      element,
    );
    return () => chart.destroy();
  }, [timeline]);
  return (
    <div
      className="s2p-timeline"
      data-testid="outage-timeline"
      data-outages={timeline.outages.length}
      ref={ref}
    />
  );
}
