import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import type { LRUCache } from 'lru-cache';
import { INTERNAL_PREFIX } from './names.js';
import { FileDir, compareEntries, compareFast, compareNames, parseRecords, recordOf, type DirEntry } from './sorted-dir.js';

// The external sort of a directory too big to sort in memory (./sorted-dir.ts):
// its entries come in runs of bounded size, each sorted and written to a temp
// file; the runs are then merged, through a heap of their heads, into one
// index file of fixed-size blocks.

/** Reads records one by one from a run file, a chunk at a time. */
class RunReader {
  /** Bytes read but not parsed yet: the start of a record cut by the chunk's end. */
  private rest = Buffer.alloc(0);
  private off = 0;
  private entries: DirEntry[] = [];
  private i = 0;
  head: DirEntry | undefined;

  constructor(private readonly fh: fsp.FileHandle) {}

  /** Moves to the next record; false at the end. */
  async next(): Promise<boolean> {
    while (this.i >= this.entries.length) {
      const chunk = Buffer.allocUnsafe(1 << 16);
      const { bytesRead } = await this.fh.read(chunk, 0, chunk.length, this.off);
      if (bytesRead === 0) {
        this.head = undefined;
        return false;
      }
      this.off += bytesRead;
      const buf = Buffer.concat([this.rest, chunk.subarray(0, bytesRead)]);
      this.entries = [];
      this.i = 0;
      this.rest = buf.subarray(parseRecords(buf, this.entries));
    }
    this.head = this.entries[this.i++];
    return true;
  }
}

export interface ExternalOptions {
  /** Where runs and index files go (cleared at start-up). */
  indexDir: string;
  blockEntries: number;
  blocks: LRUCache<string, DirEntry[]>;
}

/** Collects a big directory's entries into sorted runs, then merges them into an index file. */
export class ExternalSort {
  private readonly runs: string[] = [];
  /** Whether a run held surrogates (then the merge compares by code point, not UTF-16 unit). */
  private wide = false;

  constructor(private readonly opts: ExternalOptions) {}

  private tempName(kind: string): string {
    return path.join(this.opts.indexDir, `${INTERNAL_PREFIX}${kind}-${randomBytes(8).toString('hex')}`);
  }

  /** Sorts `items` (emptied) into a run file. */
  async addRun(items: DirEntry[], fastSort: boolean): Promise<void> {
    if (!fastSort) this.wide = true;
    items.sort(fastSort ? compareFast : compareEntries);
    const file = this.tempName('run');
    this.runs.push(file);
    await fsp.mkdir(this.opts.indexDir, { recursive: true });
    const fh = await fsp.open(file, 'w');
    try {
      let chunk = '';
      for (const e of items) {
        chunk += recordOf(e);
        if (chunk.length >= 1 << 18) {
          await fh.write(chunk);
          chunk = '';
        }
      }
      if (chunk) await fh.write(chunk);
    } finally {
      await fh.close();
    }
    items.length = 0;
  }

  /** Merges the runs into one index file (the runs are removed). */
  async finish(stamp: string): Promise<FileDir> {
    const { blockEntries } = this.opts;
    const file = this.tempName('idx');
    const readers: { r: RunReader; fh: fsp.FileHandle }[] = [];
    let out: fsp.FileHandle | undefined;
    let ok = false;
    try {
      for (const run of this.runs) {
        const fh = await fsp.open(run, 'r');
        readers.push({ r: new RunReader(fh), fh });
      }
      out = await fsp.open(file, 'w+');
      // A binary heap of the runs by their head entry.
      const heap: RunReader[] = [];
      for (const { r } of readers) if (await r.next()) heap.push(r);
      const less = this.wide ? (i: number, j: number) => compareNames(heap[i].head!.rel, heap[j].head!.rel) < 0 : (i: number, j: number) => heap[i].head!.rel < heap[j].head!.rel;
      const down = (i: number) => {
        for (;;) {
          const l = 2 * i + 1;
          let m = i;
          if (l < heap.length && less(l, m)) m = l;
          if (l + 1 < heap.length && less(l + 1, m)) m = l + 1;
          if (m === i) return;
          [heap[i], heap[m]] = [heap[m], heap[i]];
          i = m;
        }
      };
      for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i);
      const firsts: string[] = [];
      const offsets: number[] = [];
      let offset = 0;
      let count = 0;
      let block = '';
      const flush = async () => {
        const buf = Buffer.from(block);
        await out!.write(buf, 0, buf.length, offset);
        offset += buf.length;
        block = '';
      };
      while (heap.length > 0) {
        const r = heap[0];
        const e = r.head!;
        if (count % blockEntries === 0) {
          if (count > 0) await flush();
          firsts.push(e.rel);
          offsets.push(offset);
        }
        block += recordOf(e);
        count++;
        if (!(await r.next())) {
          heap[0] = heap[heap.length - 1];
          heap.pop();
        }
        down(0);
      }
      if (block) await flush();
      offsets.push(offset);
      const dir = new FileDir(stamp, file, out, count, blockEntries, firsts, offsets, this.opts.blocks);
      ok = true;
      return dir;
    } finally {
      for (const { fh } of readers) await fh.close().catch(() => {});
      if (!ok) {
        await out?.close().catch(() => {});
        await fsp.rm(file, { force: true }).catch(() => {});
      }
      await this.discard();
    }
  }

  /** Removes the runs (after the merge, or when the read failed). */
  async discard(): Promise<void> {
    await Promise.all(this.runs.map((f) => fsp.rm(f, { force: true }).catch(() => {})));
    this.runs.length = 0;
  }
}

/** Writing an index file failed: the directory itself may be fine. */
export class IndexWriteError extends Error {}

export async function indexWrite<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    throw new IndexWriteError(`sorted listing index: ${(err as Error).message}`, { cause: err });
  }
}
