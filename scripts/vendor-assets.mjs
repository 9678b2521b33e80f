#!/usr/bin/env node
// Copies the browser assets the Worker serves from public/ (wrangler.toml [assets])
// out of node_modules, so no page it serves loads anything from a CDN: sites
// without internet use the API reference too. public/vendor/ is generated, not committed.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const VENDOR = {
  "swagger-ui": { from: dirname(require.resolve("swagger-ui-dist/package.json")), files: ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"] },
};

for (const [name, { from, files }] of Object.entries(VENDOR)) {
  const to = join("public", "vendor", name);
  mkdirSync(to, { recursive: true });
  for (const f of files) copyFileSync(join(from, f), join(to, f));
}
