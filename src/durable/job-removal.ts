/**
 * delete, the life cycle's last step: an ended job goes with all it left. Files in R2
 * first (if that fails, the rows stay and the next attempt deletes both, so no file
 * outlives its job), then in one transaction the row, its logs and idempotency keys,
 * and a tombstone that takes it off the index. Only ended jobs are deleted (callers
 * check; retention selects only ended ones).
 */
import type { Sql } from "./sql-object.js";
import type { IndexFeed } from "./index-feed.js";
import type { JobOutput } from "./job-output.js";
import type { EndedJob } from "./job-retention.js";
import { jobFilesPrefix } from "../platform/r2-keys.js";

export class JobRemoval {
  constructor(
    private readonly sql: Sql,
    private readonly transaction: (fn: () => void) => void,
    private readonly files: R2Bucket,
    private readonly feed: IndexFeed,
    private readonly output: JobOutput,
  ) {}

  async deleteEnded(rows: EndedJob[]) {
    const files: string[] = [];
    for (const r of rows) {
      if (!r.call) continue; // only calls of deployed functions have files
      const listed = await this.files.list({ prefix: jobFilesPrefix(r.id) });
      files.push(...listed.objects.map((o) => o.key));
    }
    for (let i = 0; i < files.length; i += 1000) await this.files.delete(files.slice(i, i + 1000));
    this.transaction(() => {
      for (const { id } of rows) {
        if (this.sql.run("DELETE FROM jobs WHERE id = ?", id) === 0) continue; // already gone
        this.sql.run("INSERT INTO index_tombstones (change_seq, job_id) VALUES (?, ?)", this.feed.nextTombstone(), id);
        this.sql.run("DELETE FROM idempotency WHERE job_id = ?", id);
        this.output.remove(id);
      }
    });
    this.feed.schedule();
  }
}
