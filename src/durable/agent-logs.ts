/** The agent's own recent log lines (runner.logs, sent with heartbeats): the newest AGENT_LOG_ROWS are kept. */
import type { Sql } from "./sql-object.js";
import type { AgentLogLine } from "../protocol/agent.js";

export const AGENT_LOGS_TABLE = "CREATE TABLE agent_logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, level TEXT NOT NULL, msg TEXT NOT NULL, fields TEXT)";
const AGENT_LOG_ROWS = 1000;

export class AgentLogs {
  constructor(private readonly sql: Sql) {}

  keep(lines: AgentLogLine[]) {
    if (lines.length === 0) return;
    for (const l of lines) this.sql.run`INSERT INTO agent_logs (at, level, msg, fields) VALUES (${l.at}, ${l.level}, ${l.msg}, ${l.fields ?? null})`;
    this.sql.run("DELETE FROM agent_logs WHERE seq <= (SELECT MAX(seq) FROM agent_logs) - ?", AGENT_LOG_ROWS);
  }

  /** The newest `limit` lines, oldest first. */
  read(limit: number): (AgentLogLine & { seq: number })[] {
    const rows = this.sql.all<{ seq: number; at: number; level: AgentLogLine["level"]; msg: string; fields: string | null }>(
      "SELECT * FROM (SELECT * FROM agent_logs ORDER BY seq DESC LIMIT ?) ORDER BY seq", limit,
    );
    return rows.map((r) => ({ seq: r.seq, at: r.at, level: r.level, msg: r.msg, ...(r.fields ? { fields: r.fields } : {}) }));
  }
}
