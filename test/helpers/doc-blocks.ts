/**
 * The fenced code blocks of the README and docs/, so a test can parse or run
 * every one of them as written. A block that cannot run here (it deploys to
 * your Cloudflare account, it is one of the two commands CI itself runs) is
 * preceded by `<!-- docs-test: skip: <reason> -->`; it is still syntax-checked.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface DocBlock {
  file: string;
  /** 1-based line of the opening fence */
  line: number;
  lang: string;
  code: string;
  /** why it is not run, when it is not */
  skip: string | null;
}

const FENCE = /^```([\w-]*)\s*$/;
const SKIP = /^<!--\s*docs-test:\s*skip:\s*(.+?)\s*-->\s*$/;

export function docBlocks(file: string): DocBlock[] {
  const lines = readFileSync(file, "utf8").split("\n");
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i]!.match(FENCE);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    const before = lines.slice(0, start).reverse().find((l) => l.trim() !== "");
    blocks.push({ file, line: start + 1, lang: open[1] ?? "", code: body.join("\n"), skip: before?.match(SKIP)?.[1] ?? null });
  }
  return blocks;
}

/** README.md and every Markdown file under docs/. */
export function documentationFiles(root = "."): string[] {
  return [join(root, "README.md"), ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => join(root, "docs", f))];
}
