import { describe, expect, it } from "vitest";
import { deviceCredentialKey, deviceCredentialMac, MIN_DEVICE_CREDENTIAL_KEY_LENGTH, verifyDeviceCredentialMac } from "./device-credential.js";

const KEY = "k".repeat(MIN_DEVICE_CREDENTIAL_KEY_LENGTH);
const SECRET = "s".repeat(43);

describe("device credential MACs", () => {
  it("refuses a missing or short key", () => {
    expect(deviceCredentialKey(undefined)).toBeNull();
    expect(deviceCredentialKey("k".repeat(MIN_DEVICE_CREDENTIAL_KEY_LENGTH - 1))).toBeNull();
    expect(deviceCredentialKey(KEY)).not.toBeNull();
  });

  it("verifies only the MAC issued for that device, secret and key", async () => {
    const key = await deviceCredentialKey(KEY)!;
    const other = await deviceCredentialKey(KEY + "x")!;
    const mac = await deviceCredentialMac(key, "daaaaaaaaaaaaaaaa", SECRET);
    expect(mac).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await verifyDeviceCredentialMac(key, "daaaaaaaaaaaaaaaa", SECRET, mac)).toBe(true);
    expect(await verifyDeviceCredentialMac(key, "dbbbbbbbbbbbbbbbb", SECRET, mac)).toBe(false);
    expect(await verifyDeviceCredentialMac(key, "daaaaaaaaaaaaaaaa", "t".repeat(43), mac)).toBe(false);
    expect(await verifyDeviceCredentialMac(other, "daaaaaaaaaaaaaaaa", SECRET, mac)).toBe(false);
  });
});
