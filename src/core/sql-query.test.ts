import { describe, expect, it } from "vitest";
import { query } from "./sql-query.js";

describe("query (tagged SQL template)", () => {
  it("puts one ? where each value was and keeps the values in order as parameters", () => {
    const id = "job-1";
    const state = "queued";
    expect(query`SELECT * FROM jobs WHERE id = ${id} AND state = ${state}`).toEqual({
      text: "SELECT * FROM jobs WHERE id = ? AND state = ?",
      params: ["job-1", "queued"],
    });
  });

  it("leaves a statement without values unchanged", () => {
    expect(query`SELECT COUNT(*) AS n FROM jobs`).toEqual({ text: "SELECT COUNT(*) AS n FROM jobs", params: [] });
  });

  it("places parameters at the very start, the very end and next to each other", () => {
    const q = query`${1}${2} x ${3}`;
    expect(q.text).toBe("?? x ?");
    expect(q.params).toEqual([1, 2, 3]);
  });

  it("never inlines a value, even one holding quotes, ? or SQL", () => {
    const hostile = "x' OR '1'='1'; DROP TABLE jobs; -- ?";
    const q = query`INSERT INTO jobs (id, name) VALUES (${hostile}, ${"?"})`;
    expect(q.text).toBe("INSERT INTO jobs (id, name) VALUES (?, ?)");
    expect(q.text).not.toContain("DROP");
    expect(q.params).toEqual([hostile, "?"]);
  });

  it("keeps null, numbers and bytes as they are", () => {
    const bytes = new Uint8Array([1, 2]).buffer;
    const q = query`UPDATE t SET a = ${null}, b = ${0}, c = ${bytes}`;
    expect(q.text).toBe("UPDATE t SET a = ?, b = ?, c = ?");
    expect(q.params).toEqual([null, 0, bytes]);
    expect(q.params[2]).toBe(bytes);
  });

  it("keeps a literal ? or quote written in the template's text as text", () => {
    const q = query`SELECT '?' AS a, "b" FROM t WHERE x = ${5}`;
    expect(q.text).toBe(`SELECT '?' AS a, "b" FROM t WHERE x = ?`);
    expect(q.params).toEqual([5]);
  });

  it("rejects a value SQLite cannot bind at compile time", () => {
    // @ts-expect-error: a boolean is not a SqlValue
    query`SELECT ${true}`;
    // @ts-expect-error: undefined is not a SqlValue
    query`SELECT ${undefined}`;
    // @ts-expect-error: an object is not a SqlValue
    query`SELECT ${{ a: 1 }}`;
  });
});
