import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import type { Test } from 'tap';
import { encodeName } from '../../src/storage/filesystem/names.js';

// Shared by the filesystem sorted-listing tests (test/fs-sorted-*.test.ts).

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Sizes made tiny so that a few thousand names take many runs, blocks and evictions. */
export const TINY = { memoryEntries: 60, runEntries: 45, blockEntries: 16, blockBytes: 8192 };

/** Writes blobs as files directly (the backend's fsyncs would make thousands slow). */
export async function layOut(root: string, names: string[]): Promise<void> {
  for (const n of names) {
    const p = path.join(root, 'bkt', ...encodeName(n));
    try {
      await fsp.mkdir(path.dirname(p), { recursive: true });
      await fsp.writeFile(p, 'x', { flag: 'wx' });
    } catch {
      // a name whose path is another name's directory, or the other way round
    }
  }
}

/** Past the window in which a changed directory is read again for every page: the next read is kept. */
export const settle = () => new Promise((r) => setTimeout(r, 2600));

export async function indexFiles(root: string): Promise<string[]> {
  return (await fsp.readdir(path.join(root, '.list-index'))).sort();
}

/** Whether open descriptors can be counted (Linux /proc); the checks that need it skip elsewhere. */
export const HAS_PROC_FD = existsSync('/proc/self/fd');

/** Open descriptors of this process on index files (0 without /proc: check HAS_PROC_FD). */
export async function openIndexes(root: string): Promise<number> {
  let n = 0;
  for (const fd of await fsp.readdir('/proc/self/fd').catch(() => [])) {
    const to = await fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (to.includes(path.join(root, '.list-index'))) n++;
  }
  return n;
}

export async function until(what: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (await what()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** Open descriptors on index files come to `want` (Linux only: counted in /proc). */
export async function descriptors(t: Test, root: string, want: number, msg: string): Promise<void> {
  if (!HAS_PROC_FD) return void t.pass(msg, { skip: 'no /proc/self/fd to count descriptors' });
  t.ok(await until(async () => (await openIndexes(root)) === want), msg);
}
