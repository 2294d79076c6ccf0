import * as fsp from 'node:fs/promises';
import type { LRUCache } from 'lru-cache';
import { decodeComponents, pieceEnds } from './names.js';

// One directory's entries in name order (./sorted-list.ts), held in one of
// two ways. A directory of up to `memoryEntries` entries is an array in
// memory. A bigger one is sorted externally (sorted runs of bounded size in
// temp files, merged) into an index file of blocks of `blockEntries` entries;
// memory then holds each block's first name and offset, and a global LRU of
// decoded blocks bounded in bytes. So memory does not grow with the
// directory: 1M keys in one prefix is about 2,000 block headers.
//
// A record, in runs and index blocks alike, is a type byte ('d' directory,
// 'f' file) and the entry's name on disk, then a NUL (which no file name holds).

/** UTF-8 byte order, which is code point order (UTF-16 order differs above U+D7FF). */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (code points above U+FFFF) sort after U+E000..U+FFFF.
    if (x >= 0xd800 && y >= 0xd800) {
      x = x < 0xe000 ? x + 0x2000 : x - 0x800;
      y = y < 0xe000 ? y + 0x2000 : y - 0x800;
    }
    return x < y ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** Without surrogates UTF-16 order is code point order, and the built-in comparison is much faster. */
export const compareFast = (a: DirEntry, b: DirEntry) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0);
export const compareEntries = (a: DirEntry, b: DirEntry) => compareNames(a.rel, b.rel);

export interface DirEntry {
  /** Decoded name relative to the directory: a file's name, `seg/` for a directory, the piece for a continuation. */
  rel: string;
  /** The entry's name on disk, where it differs from `rel`. */
  disk?: string;
  dir: boolean;
}

export interface SortedDir {
  /** Inode, mtime and ctime when read (./sorted-list.ts). */
  readonly stamp: string;
  readonly length: number;
  /** Memory held, bytes (the cache's weight). */
  readonly bytes: number;
  /** Entry `i` when it is in memory. */
  at(i: number): DirEntry | undefined;
  load(i: number): Promise<DirEntry>;
  /** Index of the first entry whose `rel` is >= `rel`. */
  lowerBound(rel: string): Promise<number>;
  /** A listing reading the directory holds it; its files stay until the last one lets go. */
  hold(): void;
  release(): void;
  /** Out of the cache (or never in it): its index file goes once nobody holds it. */
  drop(): void;
}

/** The entry for a name read from a directory; null for names the mapping never makes (./names.ts). */
export function entryOf(name: string, dir: boolean): DirEntry | null {
  const rel = dir ? decodeComponents(name.endsWith('%+') ? [name] : [name, '']) : name.includes('%') ? decodeComponents([name]) : name;
  if (rel === null) return null;
  return rel === name ? { rel, dir } : { rel, disk: name, dir };
}

/** Approximate heap bytes of an entry (object, strings, array slot). */
export function entryBytes(e: DirEntry): number {
  return 64 + 2 * (e.rel.length + (e.disk?.length ?? 0));
}

export class MemoryDir implements SortedDir {
  readonly length: number;
  constructor(
    readonly stamp: string,
    private readonly entries: DirEntry[],
    readonly bytes: number,
  ) {
    this.length = entries.length;
  }
  at(i: number): DirEntry | undefined {
    return this.entries[i];
  }
  load(i: number): Promise<DirEntry> {
    return Promise.resolve(this.entries[i]);
  }
  lowerBound(rel: string): Promise<number> {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareNames(this.entries[mid].rel, rel) < 0) lo = mid + 1;
      else hi = mid;
    }
    return Promise.resolve(lo);
  }
  hold(): void {}
  release(): void {}
  drop(): void {}
}

/** Appends the whole records of `buf` to `out`; returns the bytes they took (a partial record may follow). */
export function parseRecords(buf: Buffer, out: DirEntry[]): number {
  let pos = 0;
  for (;;) {
    const end = buf.indexOf(0, pos);
    if (end < 0) return pos;
    const e = entryOf(buf.toString('utf8', pos + 1, end), buf[pos] === 0x64);
    if (e) out.push(e);
    pos = end + 1;
  }
}

/**
 * The entries of a directory that may hold names >= `rel` (relative to the
 * directory): those from the first one at or above it, preceded by the
 * directories sorting below it that `rel` starts with. Those can only be the
 * directory `seg/` of rel's first segment, and continuation pieces (./names.ts)
 * of that segment, which end where pieceEnds says: each is looked up by
 * binary search, so a marker deep among long names sharing a prefix costs a
 * few searches, not a walk back over its neighbours.
 */
export async function startIndices(d: SortedDir, rel: string): Promise<number[]> {
  const slash = rel.indexOf('/');
  const seg = slash < 0 ? rel : rel.slice(0, slash);
  // Ascending, so their indices are too: each is a prefix of the next.
  const prefixes = pieceEnds(seg).map((n) => rel.slice(0, n));
  if (slash >= 0) prefixes.push(rel.slice(0, slash + 1));
  const before: number[] = [];
  for (const p of prefixes) {
    if (p.length >= rel.length) break;
    // A file and a piece may decode to the same name ('P' and 'P%+').
    for (let i = await d.lowerBound(p); i < d.length; i++) {
      const e = d.at(i) ?? (await d.load(i));
      if (e.rel !== p) break;
      if (e.dir) before.push(i);
    }
  }
  const lo = await d.lowerBound(rel);
  return lo < d.length ? [...before, lo] : before;
}

/** A record: the type byte and the name on disk, then NUL. */
export const recordOf = (e: DirEntry) => `${e.dir ? 'd' : 'f'}${e.disk ?? e.rel}\0`;

export class FileDir implements SortedDir {
  private refs = 0;
  private dropped = false;
  private closed = false;
  private last: { b: number; entries: DirEntry[] } | undefined;
  readonly bytes: number;

  constructor(
    readonly stamp: string,
    readonly file: string,
    private readonly fh: fsp.FileHandle,
    readonly length: number,
    private readonly blockEntries: number,
    /** First `rel` of each block. */
    private readonly firsts: string[],
    /** Byte offset of each block, and the file's length last. */
    private readonly offsets: number[],
    private readonly blocks: LRUCache<string, DirEntry[]>,
  ) {
    this.bytes = 1024 + firsts.reduce((n, f) => n + 80 + 2 * f.length, 0);
  }

  private key(b: number): string {
    return `${this.file}\0${b}`;
  }

  at(i: number): DirEntry | undefined {
    const b = Math.floor(i / this.blockEntries);
    if (this.last?.b !== b) {
      const hit = this.blocks.get(this.key(b));
      if (!hit) return undefined;
      this.last = { b, entries: hit };
    }
    return this.last.entries[i - b * this.blockEntries];
  }

  async load(i: number): Promise<DirEntry> {
    const b = Math.floor(i / this.blockEntries);
    return (await this.block(b))[i - b * this.blockEntries];
  }

  private async block(b: number): Promise<DirEntry[]> {
    if (this.last?.b === b) return this.last.entries;
    let entries = this.blocks.get(this.key(b));
    if (!entries) {
      if (this.closed) throw new Error(`sorted-dir: ${this.file} read after close`);
      const len = this.offsets[b + 1] - this.offsets[b];
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await this.fh.read(buf, 0, len, this.offsets[b]);
      entries = [];
      parseRecords(buf.subarray(0, bytesRead), entries);
      if (!this.closed) this.blocks.set(this.key(b), entries);
    }
    this.last = { b, entries };
    return entries;
  }

  async lowerBound(rel: string): Promise<number> {
    // The first block starting at or above `rel`; the answer is in the one before it.
    let lo = 0;
    let hi = this.firsts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareNames(this.firsts[mid], rel) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0) return 0;
    const entries = await this.block(lo - 1);
    let a = 0;
    let z = entries.length;
    while (a < z) {
      const mid = (a + z) >> 1;
      if (compareNames(entries[mid].rel, rel) < 0) a = mid + 1;
      else z = mid;
    }
    return (lo - 1) * this.blockEntries + a;
  }

  hold(): void {
    this.refs++;
  }

  release(): void {
    this.refs--;
    // The block last read stays pinned outside the block cache's bound while held only.
    if (this.refs <= 0) this.last = undefined;
    this.closeIfDone();
  }

  drop(): void {
    if (this.dropped) return;
    this.dropped = true;
    // Unlinking an open file is fine: a listing still reading it keeps it.
    fsp.rm(this.file, { force: true }).catch(() => {});
    this.closeIfDone();
  }

  private closeIfDone(): void {
    if (!this.dropped || this.refs > 0 || this.closed) return;
    this.closed = true;
    this.last = undefined;
    for (let b = 0; b < this.firsts.length; b++) this.blocks.delete(this.key(b));
    this.fh.close().catch(() => {});
  }
}
