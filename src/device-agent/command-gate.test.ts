/** Bounded commands on the agent: applied only before their expiry on the control plane's clock, always answered. Time is injected. */
import { describe, expect, it } from "vitest";
import { CommandGate } from "./command-gate.js";
import type { CommandAck } from "../protocol/agent.js";

function gate(start: number) {
  let now = start;
  const sent: CommandAck[][] = [];
  const lines: { msg: string; fields?: Record<string, unknown> }[] = [];
  const g = new CommandGate(async (acks) => void sent.push(acks), (_l, msg, fields) => lines.push({ msg, fields }), () => now);
  return { g, sent, lines, advance: (ms: number) => (now += ms), set: (ms: number) => (now = ms) };
}

describe("CommandGate", () => {
  it("admits a command before its expiry and discards one after it, answering it expired", async () => {
    const { g, sent, lines, advance } = gate(1_000);
    g.serverTime(1_000);
    expect(g.admit({ id: "c1", expiresAt: 2_000 }, "jobs")).toBe(true);
    advance(1_000);
    expect(g.admit({ id: "c2", expiresAt: 2_000 }, "jobs")).toBe(true); // at its expiry: still in time
    advance(1);
    expect(g.admit({ id: "c3", expiresAt: 2_000 }, "cancel")).toBe(false);
    await g.flush();
    expect(sent).toEqual([[{ id: "c3", outcome: "expired", reason: "arrived 1 ms after its expiry; discarded" }]]);
    expect(lines[0]).toMatchObject({ msg: "discarded a command that arrived after its expiry", fields: { command: "c3", what: "cancel", lateMs: 1 } });
  });

  it("judges expiry on the control plane's clock: a device clock an hour behind does not apply a late command", () => {
    const { g } = gate(0); // this device thinks it is 1970
    g.serverTime(3_600_000);
    expect(g.admit({ id: "late", expiresAt: 3_599_999 }, "deployments")).toBe(false);
    expect(g.admit({ id: "fresh", expiresAt: 3_600_500 }, "deployments")).toBe(true);
  });

  it("applies messages that carry no command (an older control plane)", () => {
    const { g } = gate(5);
    expect(g.admit(undefined, "jobs")).toBe(true);
  });

  it("batches answers: acked, nacked with a reason", async () => {
    const { g, sent } = gate(0);
    g.answer({ id: "a", expiresAt: 10 }, "acked");
    g.answer({ id: "b", expiresAt: 10 }, "nacked", "no handler");
    g.answer(undefined, "acked"); // nothing to answer
    await g.flush();
    expect(sent).toEqual([[{ id: "a", outcome: "acked" }, { id: "b", outcome: "nacked", reason: "no handler" }]]);
  });

  it("keeps answers whose send failed and sends them again until the control plane confirms them", async () => {
    const attempts: CommandAck[][] = [];
    let failNext = 2; // the link drops twice
    const lines: string[] = [];
    const g = new CommandGate(async (acks) => {
      attempts.push(acks);
      if (failNext-- > 0) throw new Error("link closed (1006)");
    }, (_l, msg) => lines.push(msg), () => 0);
    g.answer({ id: "x", expiresAt: 1 }, "acked");
    g.answer({ id: "y", expiresAt: 1 }, "nacked", "no handler");
    await g.flush();
    expect(g.unconfirmed).toBe(2);
    expect(lines).toContain("could not send command answers; sending them again");
    g.answer({ id: "z", expiresAt: 1 }, "acked"); // answered while the others wait
    await g.flush();
    expect(g.unconfirmed).toBe(3);
    g.resend(); // a link opened
    await g.flush();
    expect(g.unconfirmed).toBe(0);
    expect(attempts).toEqual([
      [{ id: "x", outcome: "acked" }, { id: "y", outcome: "nacked", reason: "no handler" }],
      [{ id: "x", outcome: "acked" }, { id: "y", outcome: "nacked", reason: "no handler" }, { id: "z", outcome: "acked" }],
      [{ id: "x", outcome: "acked" }, { id: "y", outcome: "nacked", reason: "no handler" }, { id: "z", outcome: "acked" }],
    ]);
    await g.flush(); // confirmed answers are not sent again
    expect(attempts).toHaveLength(3);
    g.stop();
  });
});
