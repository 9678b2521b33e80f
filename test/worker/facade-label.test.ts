/** A device's wasmiot facade label is stable until rotated or revoked, and an old label never answers again. */
import { describe, expect, it } from "vitest";
import { SELF } from "cloudflare:test";
import { call, registerDevice } from "./helpers.js";

const viaLabel = (label: string) => SELF.fetch(`https://${label}.wasmiot.test/.well-known/wasmiot-device-description`);

describe("wasmiot facade labels", () => {
  it("answers the same label when asked again, a new one on rotate, and the old one stops answering", async () => {
    const { deviceId } = await registerDevice("facade-label");
    const first = await call("POST", `/v1/devices/${deviceId}/wasmiot-facade`);
    expect(first.status).toBe(201);
    const again = await call("POST", `/v1/devices/${deviceId}/wasmiot-facade`);
    expect(again.status).toBe(200);
    expect(again.body.label).toBe(first.body.label);
    expect((await viaLabel(first.body.label)).status).toBe(200);

    const rotated = await call("POST", `/v1/devices/${deviceId}/wasmiot-facade?rotate=true`);
    expect(rotated.status).toBe(201);
    expect(rotated.body.label).not.toBe(first.body.label);
    expect((await viaLabel(first.body.label)).status).toBe(404);
    expect((await viaLabel(rotated.body.label)).status).toBe(200);
  });

  it("never brings a revoked label back", async () => {
    const { deviceId } = await registerDevice("facade-revoke");
    const first = (await call("POST", `/v1/devices/${deviceId}/wasmiot-facade`)).body.label as string;
    expect((await call("DELETE", `/v1/devices/${deviceId}/wasmiot-facade`)).body.revoked).toBe(true);
    expect((await viaLabel(first)).status).toBe(404);
    const next = await call("POST", `/v1/devices/${deviceId}/wasmiot-facade`);
    expect(next.status).toBe(201);
    expect(next.body.label).not.toBe(first);
    expect((await viaLabel(first)).status).toBe(404);
  });
});
