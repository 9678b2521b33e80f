import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { historyEntry, parseCallPath, planWasmiot } from "./wasmiot.js";
import { WasmiotManifest } from "../protocol/wasmiot.js";

const fixture = (name: string) => WasmiotManifest.parse(JSON.parse(readFileSync(`test/fixtures/wasmiot/${name}`, "utf8")));
const none = () => null;

describe("reading wasmiot manifests", () => {
  it("turns each endpoint into a function with named, typed parameters and a per-deployment instance", () => {
    const plan = planWasmiot(fixture("manifest-fibo-single.json"), none);
    expect(plan).toMatchObject({
      ok: true,
      modules: [{ name: "fibo", binaryUrl: "http://127.0.0.1:8000/fibo.wasm", mounts: [], functions: { fibo: { params: [{ name: "param0", type: "integer", in: "query", required: true }], result: "integer", instance: "deployment", to: null } } }],
    });
  });

  it("reads execution and output mounts as input and output files", () => {
    const eq = planWasmiot(fixture("manifest-execution-mount-energy-query.json"), none);
    expect(eq.ok && eq.modules[0]!.functions.consumed_energy!.inputs).toEqual([{ name: "data", mediaType: "application/octet-stream" }]);
    const wm = planWasmiot(fixture("manifest-output-mount-washing-machine.json"), none);
    expect(wm.ok && wm.modules[0]!.functions.run_washing_machine).toMatchObject({ outputs: [{ name: "data" }], result: "none" });
  });

  it("maps a chain's next URL to a device known here, or keeps it as an outside URL", () => {
    const m = fixture("manifest-chain-fibo-deviceA.json");
    const known = planWasmiot(m, (url) => (url.port === "5002" ? { device: "dbbbbbbbbbbbbbbbb", base: url.origin } : null));
    expect(known.ok && known.modules[0]!.functions.fibo!.to).toEqual({ device: "dbbbbbbbbbbbbbbbb", module: "fibo", function: "fibo", deployment: "dep-chain", resultBase: "http://127.0.0.1:5002" });
    const outside = planWasmiot(m, none);
    expect(outside.ok && outside.modules[0]!.functions.fibo!.to).toEqual({ url: "http://127.0.0.1:5002/dep-chain/modules/fibo/fibo", method: "get", param: "param0" });
  });

  it("refuses a deployment mount without its file", () => {
    const m = fixture("manifest-fibo-single.json");
    m.mounts.fibo!.fibo!.deployment = [{ path: "data", media_type: "text/csv" }];
    expect(planWasmiot(m, none)).toEqual({ ok: false, detail: "deployment mount data of module fibo has no file in urls.other" });
  });

  it("splits call paths", () => {
    expect(parseCallPath("//dep/modules/m/f")).toEqual({ deployment: "dep", module: "m", function: "f" });
    expect(parseCallPath("/dep/modules/m")).toBeNull();
  });
});

describe("history entries", () => {
  const call = { ctx: { deployment: "d", module: "m", result: "integer" }, function: "f", method: "get", shown: { param0: "12" }, inputs: [], next: null };
  const job = (state: string, extra: object = {}) => ({ id: "j", state, createdAt: "2026-11-21T20:20:51.000Z", result: { value: 233 }, error: null, ...extra });

  it("is absent until the call is done, then has the supervisor's fields", () => {
    expect(historyEntry({ job: job("RUNNING"), call }, "http://h")).toBeNull();
    expect(historyEntry({ job: job("SUCCEEDED"), call }, "http://h")).toEqual({
      request_id: "j", deployment_id: "d", module_name: "m", function_name: "f", method: "GET", request_args: { param0: "12" }, request_files: {},
      work_queued_at: "Sat, 21 Nov 2026 20:20:51 GMT", result: ["233", null], success: true,
    });
  });

  it("shows the next step's URL once a chain step handed on, and a failure as failure", () => {
    const chained = { ...call, next: { device: "x" } };
    expect(historyEntry({ job: job("SUCCEEDED"), call: chained }, "http://h")).toBeNull();
    expect(historyEntry({ job: job("SUCCEEDED", { next: { job: "k", url: "http://b/request-history/k" } }), call: chained }, "http://h")!.result).toEqual(["http://b/request-history/k", null]);
    expect(historyEntry({ job: job("SUCCEEDED", { next: { error: "refused" } }), call: chained }, "http://h")).toMatchObject({ success: false, result: "refused" });
    expect(historyEntry({ job: job("FAILED", { error: { message: "trap" }, result: null }), call }, "http://h")).toMatchObject({ success: false, result: "trap" });
  });
});
