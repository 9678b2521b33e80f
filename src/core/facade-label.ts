/**
 * wasmiot facade labels: the capability a legacy orchestrator carries in a host name
 * (`<label>.<facade domain>`). A label is derived, not drawn: HMAC-SHA-256 of the device
 * id and a rotation number under the Worker secret DEVICE_CREDENTIAL_KEY (domain-separated
 * from device credentials by its prefix). So exposing a device again answers the same
 * label (a restarted quick start keeps its printed URL working) while only its hash is
 * stored; rotating or revoking moves to the next number, and an old label never returns.
 */
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";
export const FACADE_LABEL_LENGTH = 26; // 130 bits, DNS-safe lowercase

export async function facadeLabel(key: CryptoKey, deviceId: string, rotation: number): Promise<string> {
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`wasmiot-facade.${deviceId}.${rotation}`)));
  let out = "";
  for (let i = 0; i < FACADE_LABEL_LENGTH; i++) out += BASE32[mac[i]! & 31];
  return out;
}
