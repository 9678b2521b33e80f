/**
 * What Cloudflare bills a control plane by, counted where it happens (docs/cost.md): SQL
 * statements and the rows SQLite reports reading and writing (`cursor.rowsRead` /
 * `rowsWritten`, the billed units), calls on Durable Object stubs (each RPC call is one billed
 * request), WebSocket messages into objects (billed 20:1), alarms set (a row written each) and
 * run (a request each). Per isolate, since it started; GET /metrics reports them as
 * `wasmvisor_runtime_usage_total`, and the bench divides them by the jobs it ran.
 */
export const usage = {
  sqlStatements: 0,
  sqlRowsRead: 0,
  sqlRowsWritten: 0,
  objectCalls: 0,
  objectWebSocketMessages: 0,
  alarmsSet: 0,
  alarmsRun: 0,
};
export type UsageKind = keyof typeof usage;

/** A stub that counts each method called on it (an RPC call or fetch: one billed Durable Object request). */
export function counted<T extends object>(stub: T): T {
  const proxy = new Proxy(stub, {
    get(target, prop) {
      const value = (target as Record<PropertyKey, unknown>)[prop];
      if (typeof value !== "function" || prop === "then") return value;
      return (...args: unknown[]) => {
        usage.objectCalls++;
        // Reflect.apply: an RPC method's own `.apply` would be a remote call named "apply".
        return Reflect.apply(value as (...a: unknown[]) => unknown, target, args);
      };
    },
  });
  originals.set(proxy, stub);
  return proxy;
}

const originals = new WeakMap<object, object>();

/** The runtime's own stub behind a counted one (the test pool's helpers check a stub's native type). */
export function uncounted<T extends object>(stub: T): T {
  return (originals.get(stub) as T | undefined) ?? stub;
}
