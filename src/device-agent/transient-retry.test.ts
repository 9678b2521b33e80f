/** What a job downloads before it runs is tried again when the link broke it, never when it was refused. */
import { describe, expect, it } from "vitest";
import { ApiError } from "./api-client.js";
import { retryTransient } from "./transient-retry.js";

const policy = { tries: 4, delayMs: () => 1 };
const failing = (failures: unknown[], value = "bytes") => {
  let calls = 0;
  const fn = async () => {
    const f = failures[calls++];
    if (f) throw f;
    return value;
  };
  return { fn, calls: () => calls };
};

describe("retryTransient", () => {
  it("tries again after a cut connection, a 5xx, a 408 and a 429", async () => {
    const d = failing([new TypeError("fetch failed"), new ApiError(503, null, "x"), new ApiError(429, null, "x")]);
    await expect(retryTransient(d.fn, policy)).resolves.toBe("bytes");
    expect(d.calls()).toBe(4);
    const timeout = failing([new ApiError(408, null, "x")]);
    await expect(retryTransient(timeout.fn, policy)).resolves.toBe("bytes");
    expect(timeout.calls()).toBe(2);
  });

  it("gives up after its tries with the last error", async () => {
    const d = failing(Array.from({ length: 9 }, (_, i) => new TypeError(`fetch failed ${i + 1}`)));
    await expect(retryTransient(d.fn, policy)).rejects.toThrow("fetch failed 4");
    expect(d.calls()).toBe(4);
  });

  it("does not try a refusal again", async () => {
    for (const status of [400, 401, 403, 404, 409]) {
      const d = failing([new ApiError(status, null, "x")]);
      await expect(retryTransient(d.fn, policy)).rejects.toThrow(`HTTP ${status}`);
      expect(d.calls()).toBe(1);
    }
  });
});
