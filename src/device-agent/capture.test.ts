/** Output capture: what a guest writes is kept bounded at every moment, however it writes it. */
import { describe, expect, it } from "vitest";
import { execute, LineSplitter } from "./execute.js";
import { inspect } from "../wasm/binary.js";
import { LIMITS, type LogLine } from "../protocol/job.js";
import { compileWat, WAT } from "../../test/helpers/wat.js";

const CHUNK = new Uint8Array(64 * 1024).fill("x".charCodeAt(0));

describe("LineSplitter", () => {
  it("holds at most one line's worth per stream while a line without a newline keeps growing", () => {
    const handed: LogLine[] = [];
    const splitter = new LineSplitter((lines) => handed.push(...lines));
    let mostHeld = 0;
    for (let i = 0; i < 300; i++) {
      splitter.write(1, CHUNK);
      splitter.write(2, CHUNK);
      mostHeld = Math.max(mostHeld, splitter.heldChars);
    }
    // 300 writes of 64 KiB per stream (19 MiB each): an unbounded buffer would hold all of it.
    expect(mostHeld).toBeLessThanOrEqual(2 * LIMITS.maxLogLineBytes);
    const rest = splitter.rest();
    const lines = [...handed, ...rest];
    // Each stream's endless line was cut once at the maximum line length; the rest of it was dropped.
    expect(lines.map((l) => [l.stream, l.line.length])).toEqual([
      ["stdout", LIMITS.maxLogLineBytes],
      ["stderr", LIMITS.maxLogLineBytes],
    ]);
  });

  it("still splits ordinary lines, across writes, and cuts only the over-long one", () => {
    const splitter = new LineSplitter();
    const enc = new TextEncoder();
    splitter.write(1, enc.encode("one\ntw"));
    splitter.write(1, enc.encode("o\n" + "y".repeat(LIMITS.maxLogLineBytes + 10)));
    splitter.write(1, enc.encode("zz\nthree"));
    expect(splitter.heldChars).toBeLessThanOrEqual(LIMITS.maxLogLineBytes * 4);
    const lines = splitter.rest().map((l) => l.line);
    expect(lines).toEqual(["one", "two", "y".repeat(LIMITS.maxLogLineBytes), "three"]);
  });

  it("stops holding lines once the line cap is reached (one truncation marker)", () => {
    const splitter = new LineSplitter();
    const many = new TextEncoder().encode("a\n".repeat(LIMITS.maxLogLines + 500));
    splitter.write(1, many);
    splitter.write(1, CHUNK);
    const lines = splitter.rest();
    expect(lines).toHaveLength(LIMITS.maxLogLines + 1);
    expect(lines.at(-1)!.line).toContain("truncated");
    expect(splitter.truncated).toBe(true);
  });
});

describe("execute", () => {
  it("captures 2,000 writes of 64 KiB without a newline: bounded, marked truncated", async () => {
    const bytes = await compileWat(WAT.flood);
    const signature = inspect(bytes).exports.find((e) => e.name === "flood")!.signature!;
    let handedLines = 0;
    const result = execute(
      { module: await WebAssembly.compile(bytes), moduleKey: "flood", function: "flood", signature, args: [1, 2000], sandboxDir: "/tmp", maxOutputBytes: 64 * 1024 },
      (lines) => (handedLines += lines.length),
    );
    expect(result).toMatchObject({ ok: true, value: 2000, stdoutTruncated: true, stderrTruncated: false, stderr: "" });
    expect(result.stdout.length).toBe(64 * 1024);
    expect(handedLines + result.logs.length).toBe(1);
  });
});
