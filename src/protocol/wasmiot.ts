/**
 * The deployment manifest exactly as the wasmiot orchestrator POSTs it to a
 * supervisor's /deploy (see ../shared/fixtures/wasmiot/examples), and the
 * shapes the wasmiot facade answers with. Unknown fields are ignored, as the
 * Python supervisor ignores them.
 */
import { z } from "zod";
import { DeploymentId, FileName, ModuleName } from "./deployment.js";

const HttpUrl = z.url({ protocol: /^https?$/ });

export const WasmiotEndpoint = z.object({
  url: HttpUrl,
  path: z.string().min(1).max(512),
  method: z.string().transform((m) => m.toLowerCase()).pipe(z.enum(["get", "post"])),
  request: z
    .object({
      parameters: z
        .array(
          z.object({
            name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/),
            in: z.string().default("query"),
            required: z.boolean().default(true),
            schema: z.object({ type: z.enum(["integer", "number", "string", "boolean"]) }).default({ type: "integer" }),
          }),
        )
        .max(64)
        .default([]),
      request_body: z.unknown().optional(),
    })
    .default({ parameters: [] }),
  response: z
    .object({ media_type: z.string().default("application/json"), schema: z.object({ type: z.string().optional() }).loose().optional() })
    .default({ media_type: "application/json" }),
});
export type WasmiotEndpoint = z.infer<typeof WasmiotEndpoint>;

export const WasmiotMount = z.object({ path: FileName, media_type: z.string().max(128).default("application/octet-stream"), stage: z.string().optional() });

export const WasmiotManifest = z.object({
  deploymentId: DeploymentId,
  modules: z
    .array(
      z.object({
        id: z.string().max(128).optional(),
        name: ModuleName,
        urls: z.object({
          binary: HttpUrl,
          description: z.string().optional(),
          /** data files of deployment-stage mounts: file name -> URL */
          other: z.record(FileName, HttpUrl).default({}),
        }),
      }),
    )
    .min(1, "No modules listed")
    .max(32),
  endpoints: z.record(ModuleName, z.record(z.string().min(1).max(256), WasmiotEndpoint)).default({}),
  instructions: z
    .object({
      modules: z.record(ModuleName, z.record(z.string(), z.object({ from: WasmiotEndpoint.optional(), to: WasmiotEndpoint.nullable().default(null) }))).default({}),
    })
    .default({ modules: {} }),
  mounts: z
    .record(
      ModuleName,
      z.record(
        z.string(),
        z.object({ execution: z.array(WasmiotMount).default([]), deployment: z.array(WasmiotMount).default([]), output: z.array(WasmiotMount).default([]) }),
      ),
    )
    .default({}),
});
export type WasmiotManifest = z.infer<typeof WasmiotManifest>;

/** One entry of GET request-history, with the Python supervisor's field names. */
export interface WasmiotHistoryEntry {
  request_id: string;
  deployment_id: string;
  module_name: string;
  function_name: string;
  method: string;
  request_args: Record<string, string>;
  request_files: Record<string, string>;
  work_queued_at: string;
  /** [primitive as a string (or a next step's result URL), output file names] */
  result: [string | null, string[] | null] | string;
  success: boolean;
}

/** The discovery announcement a wasmiot supervisor sends to its orchestrator. */
export const WasmiotDiscovery = z.object({
  name: z.string().min(1).max(128),
  type: z.literal("webthing"),
  port: z.number().int().min(1).max(65535),
  properties: z.object({ path: z.string(), tls: z.string() }),
  addresses: z.array(z.string()),
  host: z.string(),
});
export type WasmiotDiscovery = z.infer<typeof WasmiotDiscovery>;
