/** A module download the link broke is tried again (the job keeps its attempt); a refusal is not. */
import { describe, expect, it } from "vitest";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModuleCache } from "./module-cache.js";
import { ApiError } from "./api-client.js";
import { compileWat, WAT } from "../../test/helpers/wat.js";
import { sha256Hex } from "../core/crypto.js";

const fast = { tries: 5, delayMs: () => 1 };

async function setup(failures: unknown[]) {
  const bytes = await compileWat(WAT.hello);
  const digest = await sha256Hex(bytes);
  let calls = 0;
  const client = {
    moduleBinary: async () => {
      const failure = failures[calls++];
      if (failure) throw failure;
      return bytes;
    },
  };
  return { digest, client, calls: () => calls };
}

describe("ModuleCache downloads", () => {
  it("tries a download again after the connection broke, and loads the module", async () => {
    const { digest, client, calls } = await setup([new TypeError("fetch failed"), new ApiError(503, null, "download module")]);
    const cache = new ModuleCache(mkdtempSync(join(tmpdir(), "modcache-")), client, 256, fast);
    const loaded = await cache.get(digest);
    expect(loaded.info.exports.some((x) => x.name === "greet")).toBe(true);
    expect(calls()).toBe(3);
  });

  it("gives up after its tries, and does not retry a refusal", async () => {
    const broken = await setup(Array.from({ length: 10 }, () => new TypeError("fetch failed")));
    await expect(new ModuleCache(mkdtempSync(join(tmpdir(), "modcache-")), broken.client, 256, fast).get(broken.digest)).rejects.toThrow("fetch failed");
    expect(broken.calls()).toBe(5);
    const refused = await setup([new ApiError(404, null, "download module")]);
    await expect(new ModuleCache(mkdtempSync(join(tmpdir(), "modcache-")), refused.client, 256, fast).get(refused.digest)).rejects.toThrow("HTTP 404");
    expect(refused.calls()).toBe(1);
  });
});
