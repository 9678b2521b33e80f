import { z } from "zod";
import { LIMITS } from "../../protocol/job.js";
import { jsonResponse, route } from "../route.js";
import type { App } from "../http.js";

export const API_VERSION = "0.1.0";

const SupervisorInfo = z.object({
  name: z.literal("wasmvisor"),
  version: z.string(),
  transports: z.array(z.string()),
  limits: z.record(z.string(), z.number()),
  time: z.string(),
});

const info = route({
  method: "get",
  path: "/v1/info",
  roles: ["admin", "user", "register", "device"],
  summary: "What this control plane is and its limits (Hero's supervisor.info)",
  responses: { 200: jsonResponse(SupervisorInfo, "About this control plane") },
});

export function infoRoutes(app: App) {
  app.openapi(info, (c) =>
    c.json({ name: "wasmvisor" as const, version: API_VERSION, transports: ["websocket", "long-poll"], limits: { ...LIMITS }, time: new Date().toISOString() }, 200),
  );
}
