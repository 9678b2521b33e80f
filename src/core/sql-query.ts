/**
 * A SQL statement written as a tagged template: `query\`SELECT * FROM jobs WHERE id = ${id}\``.
 * Every interpolated value becomes a bound `?` parameter, never text of the
 * statement, so a value can hold quotes, `?` or SQL without changing the query.
 * Pure: the Durable Objects' `Sql` helper passes the result to SQLite.
 */

/** What SQLite binds (the same union as workers-types' SqlStorageValue). */
export type SqlValue = ArrayBuffer | string | number | null;

export interface SqlQuery {
  readonly text: string;
  readonly params: SqlValue[];
}

/** Joins the template's literal parts with `?` and keeps the values, in order, as parameters. */
export function query(strings: TemplateStringsArray, ...values: SqlValue[]): SqlQuery {
  return { text: strings.join("?"), params: values };
}
