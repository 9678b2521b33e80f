/**
 * A small per-isolate cache whose entries expire: what the Worker remembers of the
 * registry (keys, settings) so that hot paths skip a hop, at the price of changes
 * taking up to `ttlMs` to reach other isolates. Bounded: past `maxEntries` it starts over.
 */
export class TtlCache<K, V> {
  private readonly entries = new Map<K, { value: V; until: number }>();

  constructor(private readonly ttlMs: number, private readonly maxEntries = 10_000) {}

  /** The cached value, or what `load` answers (then cached), unless `keep` says not to keep it. */
  async get(key: K, load: () => Promise<V>, keep: (value: V) => boolean = () => true): Promise<V> {
    const hit = this.entries.get(key);
    if (hit && hit.until > Date.now()) return hit.value;
    const value = await load();
    if (!keep(value)) {
      this.entries.delete(key);
      return value;
    }
    if (this.entries.size >= this.maxEntries) this.entries.clear();
    this.entries.set(key, { value, until: Date.now() + this.ttlMs });
    return value;
  }

  clear() {
    this.entries.clear();
  }

  delete(key: K) {
    this.entries.delete(key);
  }
}
