/**
 * Files that must survive a power loss whole: written to a temporary file, fsynced, renamed over the
 * old one, and the directory fsynced, so that after a crash the file holds either the old content or
 * the new, never a torn mix, and the rename itself is on disk.
 */
import { open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

export async function writeFileAtomic(file: string, data: string) {
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  await fsyncDir(dirname(file));
}

/** Removes the file, durably. */
export async function removeFileDurably(file: string) {
  await rm(file, { force: true });
  await fsyncDir(dirname(file));
}

/** Makes a rename or removal in `dir` durable (where the platform can open a directory). */
async function fsyncDir(dir: string) {
  const fh = await open(dir, "r").catch(() => null);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    // some file systems cannot fsync a directory; the rename is as durable as they make it
  } finally {
    await fh.close();
  }
}
