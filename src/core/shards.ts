/**
 * Spreading one kind of object over a fixed number of shards, and reading them back in
 * one order. Pure: the objects themselves are named by the caller.
 */

/** FNV-1a (32 bit): stable across isolates and releases, cheap, well spread for ids. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The shard (0 .. shards-1) that `key` always lands in. */
export function shardOf(key: string, shards: number): number {
  return shards <= 1 ? 0 : fnv1a(key) % shards;
}

/**
 * A k-way merge of pages that are each sorted by `compare` and each hold every row past
 * the same cursor (up to `limit` + 1): the first `limit` rows of the union, and whether
 * any row remains after them. Since every shard filters by the same total-order cursor,
 * the last row of the page is a correct cursor for the next one.
 */
export function mergePages<T>(pages: readonly (readonly T[])[], compare: (a: T, b: T) => number, limit: number): { rows: T[]; more: boolean } {
  const at = pages.map(() => 0);
  const rows: T[] = [];
  for (;;) {
    let best = -1;
    for (let p = 0; p < pages.length; p++) {
      const row = pages[p]![at[p]!];
      if (row !== undefined && (best < 0 || compare(row, pages[best]![at[best]!]!) < 0)) best = p;
    }
    if (best < 0) return { rows, more: false };
    if (rows.length === limit) return { rows, more: true };
    rows.push(pages[best]![at[best]!]!);
    at[best]!++;
  }
}
