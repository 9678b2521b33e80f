type WasmvisorEnv = import("../../src/worker/env.js").Env;

declare namespace Cloudflare {
  interface Env extends WasmvisorEnv {}
}
