/**
 * A request whose path exists but not with its method answers 405 with the
 * methods that path does take (RFC 9110 §15.5.6), instead of a 404 that would
 * send a client looking for a route that is there.
 */
type RouteEntry = { method: string; path: string };

/** Hono's path syntax (`/v1/jobs/:id`, `:id{[0-9]+}`, `*`) as an anchored pattern. */
export function pathPattern(path: string): RegExp {
  const source = path
    .split("/")
    .map((segment) => {
      if (segment === "*") return ".*";
      const param = segment.match(/^:[A-Za-z0-9_]+(?:\{(.+)\})?\??$/);
      if (param) return param[1] ?? "[^/]+";
      return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  return new RegExp(`^${source}$`); // strict, as Hono routes: "/v1/jobs/x/" is not "/v1/jobs/x"
}

/** Builds, once, the lookup of the methods each registered path answers. */
export function allowedMethods(routes: readonly RouteEntry[]): (path: string) => string[] {
  const table = routes
    .filter((r) => r.method !== "ALL" && !r.path.endsWith("*"))
    .map((r) => ({ method: r.method, pattern: pathPattern(r.path) }));
  return (path) => {
    const methods = new Set(table.filter((r) => r.pattern.test(path)).map((r) => r.method));
    if (methods.has("GET")) methods.add("HEAD");
    return [...methods].sort();
  };
}
