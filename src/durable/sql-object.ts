/**
 * A small base for SQLite-backed Durable Objects: runs idempotent migrations
 * once per instance and offers a typed `sql` helper. Subclasses stay thin:
 * storage, RPC and alarm.
 */
import { DurableObject } from "cloudflare:workers";
import { Clock } from "../core/clock.js";
import { query } from "../core/sql-query.js";
import { usage } from "../platform/usage.js";

export type Row = Record<string, SqlStorageValue>;

/**
 * The queries a helper of an object may run on its database. Each takes either a
 * statement with positional `?` parameters (for SQL whose text is chosen at run time)
 * or a tagged template, `sql.one\`SELECT * FROM jobs WHERE id = ${id}\``,
 * whose values are always bound parameters, never spliced into the text.
 */
export interface Sql {
  all<T extends Row>(strings: TemplateStringsArray, ...values: SqlStorageValue[]): T[];
  all<T extends Row>(query: string, ...params: SqlStorageValue[]): T[];
  one<T extends Row>(strings: TemplateStringsArray, ...values: SqlStorageValue[]): T | undefined;
  one<T extends Row>(query: string, ...params: SqlStorageValue[]): T | undefined;
  run(strings: TemplateStringsArray, ...values: SqlStorageValue[]): number;
  run(query: string, ...params: SqlStorageValue[]): number;
}

/** A statement in either form, as SQLite takes it: text and its bound parameters. */
function statement(q: string | TemplateStringsArray, values: SqlStorageValue[]): { text: string; params: SqlStorageValue[] } {
  return typeof q === "string" ? { text: q, params: values } : query(q, ...values);
}

/** The billed units of a finished statement (src/platform/usage.ts). */
function count(cursor: SqlStorageCursor<Record<string, SqlStorageValue>>) {
  usage.sqlStatements++;
  usage.sqlRowsRead += cursor.rowsRead;
  usage.sqlRowsWritten += cursor.rowsWritten;
}

/** The `Sql` helper over an object's database (also for tests that reach into an object's storage). */
export function sqlOf(storage: SqlStorage): Sql {
  const all = <T extends Row>(q: string | TemplateStringsArray, values: SqlStorageValue[]): T[] => {
    const { text, params } = statement(q, values);
    const cursor = storage.exec<T>(text, ...params);
    const rows = cursor.toArray();
    count(cursor);
    return rows;
  };
  return {
    all: <T extends Row>(q: string | TemplateStringsArray, ...p: SqlStorageValue[]) => all<T>(q, p),
    one: <T extends Row>(q: string | TemplateStringsArray, ...p: SqlStorageValue[]) => all<T>(q, p)[0],
    run: (q: string | TemplateStringsArray, ...p: SqlStorageValue[]) => {
      const { text, params } = statement(q, p);
      const cursor = storage.exec(text, ...params);
      count(cursor);
      return cursor.rowsWritten;
    },
  };
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
  protected readonly sql: Sql = sqlOf(this.ctx.storage.sql);

  // The methods below take both forms too; `as string` only picks an overload, as `sqlOf` dispatches on the value.

  protected all<T extends Row>(strings: TemplateStringsArray, ...values: SqlStorageValue[]): T[];
  protected all<T extends Row>(query: string, ...params: SqlStorageValue[]): T[];
  protected all<T extends Row>(q: string | TemplateStringsArray, ...params: SqlStorageValue[]): T[] {
    return this.sql.all<T>(q as string, ...params);
  }

  protected one<T extends Row>(strings: TemplateStringsArray, ...values: SqlStorageValue[]): T | undefined;
  protected one<T extends Row>(query: string, ...params: SqlStorageValue[]): T | undefined;
  protected one<T extends Row>(q: string | TemplateStringsArray, ...params: SqlStorageValue[]): T | undefined {
    return this.sql.one<T>(q as string, ...params);
  }

  protected run(strings: TemplateStringsArray, ...values: SqlStorageValue[]): number;
  protected run(query: string, ...params: SqlStorageValue[]): number;
  protected run(q: string | TemplateStringsArray, ...params: SqlStorageValue[]): number {
    return this.sql.run(q as string, ...params);
  }
}
