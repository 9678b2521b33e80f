#!/usr/bin/env node
// Entry point of the `wasmvisor` command. node:wasi warns as soon as it is linked, so
// the warning filter goes in first and everything else is loaded after it.
import "./quiet-warnings.js";

await import("./commands.js");
