/**
 * A small base for SQLite-backed Durable Objects: runs idempotent migrations
 * once per instance and offers a typed `sql` helper. Subclasses stay thin:
 * storage, RPC and alarm.
 */
import { DurableObject } from "cloudflare:workers";
import { Clock } from "../core/clock.js";

export type Row = Record<string, SqlStorageValue>;

/** The queries a helper of an object may run on its database. */
export interface Sql {
  all<T extends Row>(query: string, ...params: SqlStorageValue[]): T[];
  one<T extends Row>(query: string, ...params: SqlStorageValue[]): T | undefined;
  run(query: string, ...params: SqlStorageValue[]): number;
}

export abstract class SqlObject<E = unknown> extends DurableObject<E> {
  /** Every time this object decides by; tests pin and move it (see Clock). */
  readonly clock = new Clock();

  /** Schema versions in order; each runs once, in a transaction. */
  protected abstract migrations(): readonly string[];

  /**
   * true: the schema is written by the object's first write (`ensureSchema`), not
   * when it is first addressed, so an id nobody created (a stranger's guess, a
   * read of an unknown id) never costs stored state. Until then `hasSchema` is false
   * and the object must answer without touching its tables.
   */
  protected schemaOnFirstWrite(): boolean {
    return false;
  }

  private schemaReady = false;

  constructor(ctx: DurableObjectState, env: E) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      // Let the subclass constructor finish (field initialisers) before touching `this`.
      await Promise.resolve();
      if (!this.schemaOnFirstWrite() || this.schemaExists()) this.ensureSchema();
      await this.load();
    });
  }

  /** Read what the object keeps in memory; runs before any request is served. */
  protected async load(): Promise<void> {}

  protected get hasSchema(): boolean {
    return this.schemaReady;
  }

  /** Writes (or brings up to date) the schema: at construction, or for lazy objects before their first write. */
  protected ensureSchema(): void {
    if (this.schemaReady) return;
    this.migrate();
    this.schemaReady = true;
  }

  /** Reading the catalogue writes nothing. */
  private schemaExists(): boolean {
    return this.ctx.storage.sql.exec("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").toArray().length > 0;
  }

  private migrate(): void {
    this.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY)");
    const done = this.one<{ v: number | null }>("SELECT MAX(version) AS v FROM _migrations")?.v ?? 0;
    const migrations = this.migrations();
    for (let i = done; i < migrations.length; i++) {
      this.ctx.storage.transactionSync(() => {
        this.ctx.storage.sql.exec(migrations[i]!);
        this.ctx.storage.sql.exec("INSERT INTO _migrations (version) VALUES (?)", i + 1);
      });
    }
  }

  /** The same queries, for helpers that own one concern of the object's storage. */
  protected readonly sql: Sql = {
    all: (q, ...p) => this.all(q, ...p),
    one: (q, ...p) => this.one(q, ...p),
    run: (q, ...p) => this.run(q, ...p),
  };

  protected all<T extends Row>(query: string, ...params: SqlStorageValue[]): T[] {
    return this.ctx.storage.sql.exec<T>(query, ...params).toArray();
  }

  protected one<T extends Row>(query: string, ...params: SqlStorageValue[]): T | undefined {
    return this.all<T>(query, ...params)[0];
  }

  protected run(query: string, ...params: SqlStorageValue[]): number {
    return this.ctx.storage.sql.exec(query, ...params).rowsWritten;
  }
}
