import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { SERVICE_STATUS_MEANING, SERVICE_TRANSITIONS, serviceTransition, type ServiceEvent } from "./service-lifecycle.js";
import { ServiceStatus } from "../protocol/service.js";

const EVENTS = [...new Set(SERVICE_TRANSITIONS.map((r) => r.event))] as ServiceEvent[];

describe("service life cycle", () => {
  it.each<[ServiceStatus | null, ServiceEvent, ServiceStatus]>([
    [null, "schedule", "PENDING"],
    [null, "create_stopped", "STOPPED"],
    [null, "create", "STARTING"],
    ["PENDING", "due", "STARTING"],
    ["PENDING", "cancel", "KILLED"],
    ["STARTING", "spawned", "RUNNING"],
    ["RUNNING", "suspend", "STOPPED"],
    ["BACKOFF", "suspend", "STOPPED"],
    ["STOPPED", "resume_frozen", "RUNNING"],
    ["STOPPED", "resume_start", "STARTING"],
    ["RUNNING", "exit_restart", "BACKOFF"],
    ["RUNNING", "exit_clean", "EXITED"],
    ["RUNNING", "exit_crashed", "CRASHED"],
    ["STARTING", "exit_restart", "BACKOFF"],
    ["BACKOFF", "restart_due", "STARTING"],
    ["CRASHED", "rearm", "STARTING"],
    ["CRASHED", "kill", "KILLED"],
    ["KILLED", "new_run", "STARTING"],
  ])("%s --%s--> %s", (from, event, to) => {
    expect(serviceTransition(from, event)).toEqual({ ok: true, to });
  });

  it("refuses what the table does not allow, with a reason", () => {
    expect(serviceTransition("KILLED", "kill")).toMatchObject({ ok: false, reason: "kill is not allowed in status KILLED" });
    expect(serviceTransition("RUNNING", "cancel").ok).toBe(false);
    expect(serviceTransition("EXITED", "resume_frozen").ok).toBe(false);
    expect(serviceTransition(null, "kill").ok).toBe(false);
  });

  it("the table is a function: one target per (status, event), and every status has a meaning and a way in", () => {
    for (const from of [null, ...ServiceStatus.options]) {
      for (const event of EVENTS) expect(SERVICE_TRANSITIONS.filter((r) => r.event === event && r.from.includes(from)).length).toBeLessThanOrEqual(1);
    }
    for (const s of ServiceStatus.options) {
      expect(SERVICE_STATUS_MEANING[s]).toBeTruthy();
      expect(SERVICE_TRANSITIONS.some((r) => r.to === s)).toBe(true);
    }
  });

  it("property: any sequence of events keeps a service in a known status, and only kill/cancel reach KILLED", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...EVENTS), { maxLength: 40 }), (events) => {
        let s: ServiceStatus | null = null;
        for (const e of events) {
          const t = serviceTransition(s, e);
          if (!t.ok) continue;
          if (t.to === "KILLED") expect(["kill", "cancel"]).toContain(e);
          s = t.to;
        }
        return s === null || ServiceStatus.options.includes(s);
      }),
    );
  });
});
