/** Error answers: a client quoting the request id finds the Worker's log line for it. */
import { describe, expect, it } from "vitest";
import { call } from "./helpers.js";

describe("problem answers", () => {
  it("carry the request id in the x-request-id header, as every other answer does, so a client can quote it", async () => {
    const res = await call("GET", "/v1/jobs/dabcdefghijklmnop-abcdefghijklmnop");
    expect(res.status).toBe(404);
    expect(res.body.requestId).toMatch(/.+/);
    expect(res.headers.get("x-request-id")).toBe(res.body.requestId);
  });
});
