/** The browser assets the Worker serves itself (wrangler.toml [assets]): pages work on sites without internet. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";

let cp: ControlPlane;
beforeAll(async () => {
  cp = await startControlPlane();
});
afterAll(() => cp?.stop());

describe("served assets", () => {
  it("serves everything /docs loads, from this origin, without a credential", async () => {
    const html = await (await fetch(`${cp.url}/docs`)).text();
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBe(3);
    for (const ref of refs) {
      expect(ref.startsWith("/")).toBe(true);
      const res = await fetch(cp.url + ref);
      expect(res.status, ref).toBe(200);
      expect(res.headers.get("content-type"), ref).toMatch(/javascript|css/);
      expect((await res.arrayBuffer()).byteLength, ref).toBeGreaterThan(100);
    }
  });
});
