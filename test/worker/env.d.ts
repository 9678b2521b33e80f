type WasmvisorEnv = import("../../src/platform/env.js").Env;

declare namespace Cloudflare {
  interface Env extends WasmvisorEnv {}
}
