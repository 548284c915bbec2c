// Builds the frontend with esbuild. Outputs are committed (see README.md here):
//   ../src/stash2plex/web/static/stash2plex-ui.{js,css}  the bundle both hosts load
//   ../src/stash2plex/web/static/dashboard-host.js        the `stash2plex serve` host
//   ../src/stash2plex/web/static/{bootstrap.min,dashboard}.css
// `--harness` builds the browser tests' stand-in for Stash into harness/dist (not committed).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const staticDir = join(here, "..", "src", "stash2plex", "web", "static");
const common = {
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2019", "chrome90", "firefox88", "safari14"],
  legalComments: "eof",
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
  loader: { ".graphql": "text", ".js": "jsx" },
  charset: "utf8",
};

async function product() {
  mkdirSync(staticDir, { recursive: true });
  await build({
    ...common,
    entryPoints: [join(here, "src", "main.jsx")],
    outfile: join(staticDir, "stash2plex-ui.js"),
    jsxFactory: "React.createElement",
    jsxFragment: "React.Fragment",
  });
  await build({
    ...common,
    entryPoints: [join(here, "dashboard", "host.jsx")],
    outfile: join(staticDir, "dashboard-host.js"),
  });
  copyFileSync(
    join(here, "node_modules", "bootstrap", "dist", "css", "bootstrap.min.css"),
    join(staticDir, "bootstrap.min.css"),
  );
  copyFileSync(join(here, "dashboard", "dashboard.css"), join(staticDir, "dashboard.css"));
}

async function harness() {
  const out = join(here, "harness", "dist");
  mkdirSync(out, { recursive: true });
  await build({
    ...common,
    minify: false,
    entryPoints: [join(here, "harness", "host.jsx")],
    outfile: join(out, "harness.js"),
  });
  copyFileSync(join(here, "harness", "index.html"), join(out, "index.html"));
  copyFileSync(
    join(here, "node_modules", "bootstrap", "dist", "css", "bootstrap.min.css"),
    join(out, "bootstrap.min.css"),
  );
}

if (process.argv.includes("--harness")) {
  await harness();
} else {
  await product();
}
