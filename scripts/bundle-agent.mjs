#!/usr/bin/env node
// Bundles the `wasmvisor` CLI (dist/device-agent/cli.js, the device agent and the operator
// commands) into that one file, in place. Why: an idle agent's memory is mostly code it
// loaded, and one bundled module (no module records, no unused exports of zod, ws and
// commander) keeps about 10 MB less than ~100 separate modules (docs/benchmarks.md, idle
// agent RSS). Worker threads and service processes still load their own unbundled files
// from dist/device-agent/ (agent-files.ts), and only while something runs.
import { build } from "esbuild";

await build({
  entryPoints: ["dist/device-agent/cli.js"],
  outfile: "dist/device-agent/cli.js",
  allowOverwrite: true,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: "linked",
  logLevel: "warning",
  // ws and commander are CommonJS and require() Node's built-ins: give the bundle a require.
  banner: { js: 'import { createRequire as __wasmvisorRequire } from "node:module"; const require = __wasmvisorRequire(import.meta.url);' },
});
