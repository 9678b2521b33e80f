import { z } from "zod";
import { bodyLimit } from "hono/body-limit";
import { Sha256Hex } from "../../protocol/ids.js";
import { LIMITS } from "../../protocol/job.js";
import { ModuleInfo } from "../../protocol/wasm.js";
import { jsonResponse, route } from "../route.js";
import { annotate, type App, problem } from "../http.js";
import { moduleBinary, moduleInfo, storeModule } from "../module-store.js";

const upload = route({
  method: "post",
  path: "/v1/modules",
  roles: ["admin", "user"],
  summary: "Upload a WebAssembly module (content-addressed by sha256)",
  request: {
    body: { required: true, content: { "application/wasm": { schema: z.string().meta({ format: "binary" }) }, "application/octet-stream": { schema: z.string().meta({ format: "binary" }) } } },
  },
  responses: {
    201: jsonResponse(ModuleInfo, "Stored; its digest, exports and imports"),
    200: jsonResponse(ModuleInfo, "Already stored"),
  },
});

const params = z.object({ digest: Sha256Hex });

const info = route({
  method: "get",
  path: "/v1/modules/{digest}",
  roles: ["admin", "user", "device"],
  summary: "A module's exports (with signatures), imports and memory limits",
  request: { params },
  responses: { 200: jsonResponse(ModuleInfo, "The module") },
});

const binary = route({
  method: "get",
  path: "/v1/modules/{digest}/binary",
  roles: ["admin", "user", "device"],
  summary: "The module's bytes (agents verify the sha256 before use)",
  request: { params },
  responses: {
    200: { description: "The binary", content: { "application/wasm": { schema: z.string().meta({ format: "binary" }) } } },
  },
});

export function moduleRoutes(app: App) {
  app.use(
    "/v1/modules",
    bodyLimit({ maxSize: LIMITS.maxModuleBytes, onError: (c) => problem(c, "too-large", `modules are limited to ${LIMITS.maxModuleBytes} bytes`) }),
  );

  app.openapi(upload, async (c) => {
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    if (bytes.length === 0) return problem(c, "bad-wasm", "the body is empty");
    const out = await storeModule(c.env, bytes);
    if (!out.ok) return problem(c, "bad-wasm", out.detail);
    annotate(c, { event: "module stored", digest: out.info.digest, size: out.info.size, created: out.created });
    return c.json(out.info, out.created ? 201 : 200, { Location: `/v1/modules/${out.info.digest}` });
  });

  app.openapi(info, async (c) => {
    const found = await moduleInfo(c.env, c.req.valid("param").digest);
    return found ? c.json(found, 200) : problem(c, "not-found", "no module with that digest");
  });

  app.openapi(binary, async (c) => {
    const obj = await moduleBinary(c.env, c.req.valid("param").digest);
    if (!obj) return problem(c, "not-found", "no module with that digest");
    return new Response(obj.body, {
      headers: { "content-type": "application/wasm", "content-length": String(obj.size), "cache-control": "public, max-age=31536000, immutable" },
    });
  });
}
