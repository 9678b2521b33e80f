/**
 * A small per-isolate cache whose entries expire: what the Worker remembers of the
 * registry (keys, settings, labels, placements) so that hot paths skip a hop, at the
 * price of changes taking up to `ttlMs` to reach other isolates. Built on lru-cache:
 * bounded by least-recent use, expiry by its TTL (clock injectable for tests).
 */
import { LRUCache } from "lru-cache";

/** lru-cache stores no `undefined`/`null`; values are boxed so "known to be absent" can be remembered too. */
type Box<V> = { value: V };

export class TtlCache<K extends {}, V> {
  private readonly entries: LRUCache<K, Box<V>>;

  constructor(ttlMs: number, maxEntries = 10_000, now: () => number = () => Date.now()) {
    this.entries = new LRUCache<K, Box<V>>({ max: maxEntries, ttl: ttlMs, ttlAutopurge: false, ttlResolution: 0, perf: { now } });
  }

  /** The cached value, or what `load` answers (then cached), unless `keep` says not to keep it. */
  async get(key: K, load: () => Promise<V>, keep: (value: V) => boolean = () => true): Promise<V> {
    const hit = this.entries.get(key);
    if (hit) return hit.value;
    const value = await load();
    if (keep(value)) this.entries.set(key, { value });
    else this.entries.delete(key);
    return value;
  }

  clear() {
    this.entries.clear();
  }

  delete(key: K) {
    this.entries.delete(key);
  }
}
