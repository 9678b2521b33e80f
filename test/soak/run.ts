/**
 * `npm run soak`: the fault suite, then the bulk soak. Prints the figures and exits non-zero
 * if anything accepted was lost or left unfinished, or a bulk batch was refused.
 * Options: --jobs N (fault suite, default 1500), --submit-seconds, --kills (15), --crashes (2),
 * --blackhole-ms (20000), --drain-seconds (120), --bulk-jobs N (default 120000; 0 skips it),
 * --only faults|bulk, --work-dir DIR (kept for inspection: Worker logs, agents' logs and data dirs).
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runBulkSoak } from "./bulk.js";
import { runFaultSuite } from "./faults.js";
import { summary } from "./report.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "1500" },
    "submit-seconds": { type: "string" },
    kills: { type: "string", default: "15" },
    crashes: { type: "string", default: "2" },
    "blackhole-ms": { type: "string", default: "20000" },
    "drain-seconds": { type: "string", default: "120" },
    "bulk-jobs": { type: "string", default: "120000" },
    only: { type: "string" },
    "work-dir": { type: "string" },
  },
});
const workDir = values["work-dir"] ?? mkdtempSync(join(tmpdir(), "wv-soak-"));
mkdirSync(workDir, { recursive: true });
const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
let failed = false;

if (values.only !== "bulk") {
  const jobs = Number(values.jobs);
  log(`fault suite: ${jobs} jobs of 20-50 ms, 3 agents (work dir ${workDir})`);
  const report = await runFaultSuite({
    jobs,
    submitSeconds: values["submit-seconds"] ? Number(values["submit-seconds"]) : Math.max(60, jobs / 25),
    kills: Number(values.kills),
    killEveryMs: [2_000, 4_000],
    controlPlaneCrashes: Number(values.crashes),
    blackholeMs: Number(values["blackhole-ms"]),
    drainSeconds: Number(values["drain-seconds"]),
    workDir: join(workDir, "faults"),
    log,
  });
  console.log(summary(report));
  console.log(JSON.stringify(report));
  if (report.lost > 0 || report.stuck > 0) failed = true;
}

if (values.only !== "faults" && Number(values["bulk-jobs"]) > 0) {
  log(`bulk soak: ${values["bulk-jobs"]} fibo jobs to one device, batches of 1,000, five a round (work dir ${workDir})`);
  const bulk = await runBulkSoak({ jobs: Number(values["bulk-jobs"]), batchSize: 1000, batchesPerRound: 5, workDir, log });
  console.log(JSON.stringify(bulk, null, 2));
  if (bulk.refused.length > 0 || bulk.finalQueue?.queued !== 0 || bulk.finalQueue?.running !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
