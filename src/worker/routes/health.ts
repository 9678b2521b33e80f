import type { App } from "../http.js";

/** Liveness: the one anonymous route. It says nothing about the fleet. */
export function healthRoutes(app: App) {
  app.get("/healthz", (c) => c.json({ ok: true }));
}
