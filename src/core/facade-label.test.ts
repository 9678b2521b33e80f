import { describe, expect, it } from "vitest";
import { facadeLabel, FACADE_LABEL_LENGTH } from "./facade-label.js";

const key = (secret: string) => crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);

describe("facadeLabel", () => {
  it("is the same for the same device and rotation, and another for the next rotation, device or key", async () => {
    const k = await key("k".repeat(32));
    const first = await facadeLabel(k, "daaaaaaaaaaaaaaaa", 1);
    expect(first).toMatch(new RegExp(`^[a-z2-7]{${FACADE_LABEL_LENGTH}}$`));
    expect(await facadeLabel(k, "daaaaaaaaaaaaaaaa", 1)).toBe(first);
    expect(await facadeLabel(k, "daaaaaaaaaaaaaaaa", 2)).not.toBe(first);
    expect(await facadeLabel(k, "dbbbbbbbbbbbbbbbb", 1)).not.toBe(first);
    expect(await facadeLabel(await key("x".repeat(32)), "daaaaaaaaaaaaaaaa", 1)).not.toBe(first);
  });
});
