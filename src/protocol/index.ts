export * from "./ids.js";
export * from "./problem.js";
export * from "./wasm.js";
export * from "./job.js";
export * from "./device.js";
export * from "./agent.js";
export * from "./keys.js";
export * from "./signing.js";
