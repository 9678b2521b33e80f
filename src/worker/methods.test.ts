import { describe, expect, it } from "vitest";
import { allowedMethods, pathPattern } from "./methods.js";

describe("allowedMethods", () => {
  const lookup = allowedMethods([
    { method: "GET", path: "/v1/jobs/:id" },
    { method: "DELETE", path: "/v1/jobs/:id" },
    { method: "POST", path: "/v1/jobs" },
    { method: "POST", path: "/v1/jobs/:id/cancel" },
    { method: "ALL", path: "/v1/*" },
  ]);

  it("answers the methods a path takes, HEAD with GET", () => {
    expect(lookup("/v1/jobs/abc")).toEqual(["DELETE", "GET", "HEAD"]);
    expect(lookup("/v1/jobs")).toEqual(["POST"]);
  });

  it("answers nothing for a path no route has (a 404, not a 405)", () => {
    expect(lookup("/v1/nothing/here")).toEqual([]);
    expect(lookup("/v1/jobs/abc/cancel/more")).toEqual([]);
    expect(lookup("/v1/jobs/abc/")).toEqual([]); // Hono routes strictly: a trailing slash is another path
  });

  it("keeps parameters inside one segment and honours their patterns", () => {
    expect(pathPattern("/a/:id").test("/a/b/c")).toBe(false);
    expect(pathPattern("/a/:id{[0-9]+}").test("/a/12")).toBe(true);
    expect(pathPattern("/a/:id{[0-9]+}").test("/a/x")).toBe(false);
  });
});
