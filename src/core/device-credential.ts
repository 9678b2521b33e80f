/**
 * Device credentials the Worker can verify without touching storage:
 * `wvd.<deviceId>.<secret>.<mac>`, where the MAC is HMAC-SHA-256 of
 * `wvd.<deviceId>.<secret>` under the Worker secret DEVICE_CREDENTIAL_KEY.
 * A made-up credential fails the MAC and never reaches a Durable Object; the
 * secret (32 random bytes, a per-credential nonce) is also stored hashed by the
 * device's object, which refuses a credential it no longer holds (rotation).
 */
import { timingSafeEqual } from "./crypto.js";

/** Shorter keys are refused: the MAC is only as strong as the key (32 characters of a random token). */
export const MIN_DEVICE_CREDENTIAL_KEY_LENGTH = 32;

const keys = new Map<string, Promise<CryptoKey>>();

/** The HMAC key for `secret`, imported once per isolate; null when it is missing or too short. */
export function deviceCredentialKey(secret: string | undefined): Promise<CryptoKey> | null {
  if (!secret || secret.length < MIN_DEVICE_CREDENTIAL_KEY_LENGTH) return null;
  let key = keys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    keys.set(secret, key);
  }
  return key;
}

const base64url = (bytes: ArrayBuffer) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** The MAC a credential for `deviceId` with `secret` carries (43 base64url characters). */
export async function deviceCredentialMac(key: CryptoKey, deviceId: string, secret: string): Promise<string> {
  return base64url(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`wvd.${deviceId}.${secret}`)));
}

/** Whether `mac` is the one this control plane gave `deviceId` with `secret`, compared in constant time. */
export async function verifyDeviceCredentialMac(key: CryptoKey, deviceId: string, secret: string, mac: string): Promise<boolean> {
  return timingSafeEqual(await deviceCredentialMac(key, deviceId, secret), mac);
}
