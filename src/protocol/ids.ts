/**
 * Identifier and credential formats. Job ids embed their device id so that any
 * job id routes to its device's Durable Object without a lookup.
 */
import { z } from "zod";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

export function randomBase32(length: number): string {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  let out = "";
  for (const b of bytes) out += BASE32[b & 31];
  return out;
}

/** `n` as `width` base32 characters, most significant first. */
function base32Digits(n: number, width: number): string {
  let out = "";
  for (let i = 0; i < width; i++) {
    out = BASE32[n % 32] + out;
    n = Math.floor(n / 32);
  }
  return out;
}

const COUNTER_SPACE = 32 ** 6;

/**
 * Mints job ids: 10 chars of millisecond timestamp + a 6-char counter. The counter starts at
 * a random point in each new millisecond and counts up within it, so one minter never hands
 * out an id twice (a batch of 1,000 shares its millisecond; with 6 random chars per id, about
 * one batch in 2,000 held two equal ids). The wall clock stepping back keeps the last
 * millisecond. One device object mints all of its device's job ids (ids embed the device).
 */
export class JobIdMinter {
  private ms = -1;
  private counter = 0;

  next(deviceId: DeviceId, nowMs: number): JobId {
    if (nowMs > this.ms) {
      this.ms = nowMs;
      this.counter = randomCounter();
    } else if (++this.counter >= COUNTER_SPACE) {
      // This millisecond's ids are used up: borrow the next one.
      this.ms++;
      this.counter = randomCounter();
    }
    return `${deviceId}-${base32Digits(this.ms, 10)}${base32Digits(this.counter, 6)}`;
  }
}

/** A random start in the lower half of the counter space, so counting up cannot run out in practice. */
function randomCounter(): number {
  const bytes = new Uint32Array(1);
  crypto.getRandomValues(bytes);
  return bytes[0]! % (COUNTER_SPACE / 2);
}

export const DeviceId = z
  .string()
  .regex(/^d[a-z2-7]{16}$/, "a device id looks like d + 16 base32 characters");
export type DeviceId = z.infer<typeof DeviceId>;

export const JobId = z
  .string()
  .regex(/^d[a-z2-7]{16}-[a-z2-7]{16}$/, "a job id looks like <deviceId>-<16 base32 characters>");
export type JobId = z.infer<typeof JobId>;

export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "a sha256 digest is 64 lowercase hex characters");

export const newDeviceId = (): DeviceId => "d" + randomBase32(16);
/**
 * A job id that follows from a digest (of an idempotency key and the job's place in its
 * request) instead of the clock: a retried request names the very same jobs.
 */
export function derivedJobId(deviceId: DeviceId, hexDigest: string): JobId {
  let tail = "";
  for (let i = 0; i < 16; i++) tail += BASE32[parseInt(hexDigest.slice(i * 2, i * 2 + 2), 16) & 31];
  return `${deviceId}-${tail}`;
}
export const deviceOfJob = (jobId: JobId): DeviceId => jobId.slice(0, jobId.indexOf("-"));

/**
 * Bearer credentials. The prefix says what kind of credential it is, the second
 * part names the record that holds its hash, the third is the secret. Secrets
 * are 32 random bytes, so a single SHA-256 is enough to store them (no password
 * stretching needed for high-entropy secrets). A device credential has a fourth
 * part, a MAC of the first three under a Worker secret (core/device-credential.ts),
 * so the Worker refuses a made-up one without a lookup.
 */
export type ParsedCredential =
  | { kind: "api-key"; keyId: string; secret: string }
  | { kind: "device"; deviceId: DeviceId; secret: string; mac: string };

const SECRET_PART = /^[A-Za-z0-9_-]{43}$/;

export function parseCredential(token: string): ParsedCredential | undefined {
  const parts = token.split(".");
  const [prefix, id, secret, mac] = parts as [string, string, string, string | undefined];
  if (parts.length < 3 || !SECRET_PART.test(secret)) return undefined;
  if (parts.length === 3 && prefix === "wvk" && /^k[a-z2-7]{12}$/.test(id)) return { kind: "api-key", keyId: id, secret };
  if (parts.length === 4 && prefix === "wvd" && DeviceId.safeParse(id).success && SECRET_PART.test(mac!)) return { kind: "device", deviceId: id, secret, mac: mac! };
  return undefined;
}

export const newKeyId = () => "k" + randomBase32(12);

export function newSecret(): string {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export const formatApiKey = (keyId: string, secret: string) => `wvk.${keyId}.${secret}`;
export const formatDeviceCredential = (deviceId: DeviceId, secret: string, mac: string) => `wvd.${deviceId}.${secret}.${mac}`;
