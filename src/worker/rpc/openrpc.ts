/** The OpenRPC 1.3 document, generated from the method table and its zod schemas. */
import { z } from "zod";
import { METHODS } from "./methods.js";

const schemaOf = (s: z.ZodType, io: "input" | "output") => {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { io, unrepresentable: "any" }) as Record<string, unknown>;
  return rest;
};

export function openRpcDocument(version: string) {
  return {
    openrpc: "1.3.2",
    info: {
      title: "wasmvisor JSON-RPC",
      version,
      description: "Hero/Horus-style job API. Send the API key in the Authorization header. Every method is the REST route named in its description.",
    },
    methods: METHODS.map((m) => {
      const params = schemaOf(m.params, "input") as { properties?: Record<string, unknown>; required?: string[] };
      return {
        name: m.name,
        summary: m.summary,
        paramStructure: "by-name" as const,
        params: Object.entries(params.properties ?? {}).map(([name, schema]) => ({ name, schema, required: params.required?.includes(name) ?? false })),
        result: { name: "result", schema: schemaOf(m.result, "output") },
      };
    }),
  };
}
