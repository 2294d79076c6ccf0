import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import type { SortedListOptions } from '../backend.js';
import { INTERNAL_PREFIX, decodeComponents, encodePrefixDir } from './names.js';

// Listing blob names in ascending UTF-8 byte order (Backend.listSorted) on
// the filesystem. readdir returns a directory in no order, so each directory
// is read whole once, its entries decoded (./names.ts) and sorted, and the
// result kept while the directory's mtime stays what it was. A page then
// costs a binary search, a stat per directory on the way down, and a stat per
// listed file: not a walk of the prefix.
//
// An entry of a directory stands for every name below it: a file for its
// own name, a directory `seg` for the names starting with `seg/`, a
// continuation piece `<piece>%+` for those starting with the piece (./names.ts).
// Siblings' ranges can interleave (names under piece `P` and under directory
// `P/`), so a directory's names come from a merge of its entries' streams,
// started lazily: an entry is opened only once the merge reaches its prefix.

/** Directories written this recently are read again: mtime granularity (coarse clocks, 1 s on some filesystems). */
const RACY_MS = 2500;
/** Decoded continuation pieces are at least this long (SEGMENT_MAX bytes of escapes, 3 bytes a character). */
const MIN_PIECE_CHARS = 50;

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

interface SortedDir {
  /**
   * Inode, mtime and ctime when read: a cached read is used only while all
   * three match. mtime alone can be set back (utimes, rsync -t, a restore)
   * or repeat for a directory replaced by another; ctime cannot be set.
   */
  stamp: string;
  /** Decoded name relative to the directory: a file's name, `seg/` for a directory, the piece for a continuation. */
  rel: string[];
  /** The entry's name on disk, where it differs from `rel`. */
  disk: (string | undefined)[];
  isDir: Uint8Array;
}

export interface SortedEntry {
  name: string;
  /** Absolute path of the file. */
  file: string;
}

export class SortedLister {
  /** At most `maxEntries` directory entries in all (a directory of a million keys fits). */
  private readonly dirs: LRUCache<string, SortedDir>;

  constructor(maxEntries = 3_000_000) {
    this.dirs = new LRUCache<string, SortedDir>({ maxSize: maxEntries, sizeCalculation: (d) => Math.max(1, d.rel.length) });
  }

  /** The files below `bucketDir` whose names start with `prefix`, after `startAfter`, in order. */
  async *list(bucketDir: string, opts: SortedListOptions): AsyncIterable<SortedEntry> {
    const comps = encodePrefixDir(opts.prefix);
    const base = comps.length === 0 ? '' : decodeComponents([...comps, ''])!;
    yield* this.walk(path.join(bucketDir, ...comps), base, opts);
  }

  private async read(dir: string, suffixes: string[] | undefined): Promise<SortedDir | null> {
    const id = suffixes ? `${dir}\0${suffixes.join('\0')}` : dir;
    let st;
    try {
      st = await fsp.stat(dir, { bigint: true });
    } catch (err) {
      if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return null;
      throw err;
    }
    const stamp = `${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
    const hit = this.dirs.get(id);
    if (hit && hit.stamp === stamp) return hit;
    const started = Date.now();
    const items: { rel: string; disk?: string; dir: boolean }[] = [];
    let handle;
    try {
      handle = await fsp.opendir(dir, { bufferSize: 1024 });
    } catch (err) {
      if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return null;
      throw err;
    }
    let wide = false;
    for await (const ent of handle) {
      const name = ent.name;
      if (name.startsWith(INTERNAL_PREFIX)) continue;
      let rel: string | null;
      const dirent = ent.isDirectory();
      if (dirent) rel = decodeComponents(name.endsWith('%+') ? [name] : [name, '']);
      else if (ent.isFile()) {
        if (suffixes && !suffixes.some((s) => name.endsWith(s))) continue;
        rel = name.includes('%') ? decodeComponents([name]) : name;
      } else continue;
      if (rel === null) continue;
      if (!wide && /[\ud800-\udfff]/.test(rel)) wide = true;
      items.push(rel === name ? { rel, dir: dirent } : { rel, disk: name, dir: dirent });
    }
    // Without surrogates UTF-16 order is code point order, and the built-in comparison is much faster.
    items.sort(wide ? (a, b) => compareNames(a.rel, b.rel) : (a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
    const sorted: SortedDir = { stamp, rel: items.map((x) => x.rel), disk: items.map((x) => x.disk), isDir: Uint8Array.from(items, (x) => (x.dir ? 1 : 0)) };
    // A directory changed in the last instants may change again within its
    // mtime's granularity: such a listing is used once, not kept.
    const changed = st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs;
    if (Number(changed / 1_000_000n) < started - RACY_MS) this.dirs.set(id, sorted);
    else this.dirs.delete(id);
    return sorted;
  }

  /**
   * The entries of a directory (decoded names relative to `base`) that may
   * hold names >= `bound`: those from the first one at or above it, preceded
   * by directories whose prefix `bound` starts with.
   */
  private static start(d: SortedDir, rel: string): number[] {
    let lo = 0;
    let hi = d.rel.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareNames(d.rel[mid], rel) < 0) lo = mid + 1;
      else hi = mid;
    }
    const before: number[] = [];
    for (let j = lo - 1; j >= 0; j--) {
      const r = d.rel[j];
      if (d.isDir[j] && rel.startsWith(r)) before.push(j);
      // Only a continuation piece can hold `bound` while sorting below an
      // entry that does not: it is a prefix of both, and pieces are long.
      else if (commonPrefix(r, rel) < MIN_PIECE_CHARS) break;
    }
    return before.reverse().concat(lo < d.rel.length ? [lo] : []);
  }

  private async *walk(dir: string, base: string, opts: SortedListOptions): AsyncGenerator<SortedEntry> {
    const d = await this.read(dir, opts.suffixes);
    if (!d || d.rel.length === 0) return;
    const { prefix } = opts;
    const after = opts.startAfter ?? '';
    const bound = compareNames(after, prefix) > 0 ? after : prefix;
    let seq: number[];
    if (bound.startsWith(base)) seq = SortedLister.start(d, bound.slice(base.length));
    else if (compareNames(bound, base) < 0) seq = [0];
    else return;
    // seq: explicit indices, the last of which continues to the end.
    let si = 0;
    let next: number | undefined = seq[0];
    const advance = () => {
      if (next === undefined) return;
      if (si < seq.length - 1) next = seq[++si];
      else next = next + 1 < d.rel.length ? next + 1 : undefined;
    };
    type Head = { name: string; file?: string; it?: AsyncGenerator<SortedEntry> };
    const heap: Head[] = []; // ascending by name; tiny (entries whose ranges overlap)
    const push = (h: Head) => {
      let at = heap.length;
      while (at > 0 && compareNames(heap[at - 1].name, h.name) > 0) at--;
      heap.splice(at, 0, h);
    };
    for (;;) {
      opts.signal?.throwIfAborted();
      while (next !== undefined && (heap.length === 0 || compareNames(base + d.rel[next], heap[0].name) <= 0)) {
        const i = next;
        const full = base + d.rel[i];
        advance();
        // Everything from here on sorts above the prefix without starting with it.
        if (!full.startsWith(prefix) && compareNames(full, prefix) > 0) {
          next = undefined;
          break;
        }
        const diskPath = path.join(dir, d.disk[i] ?? d.rel[i]);
        if (d.isDir[i]) {
          if (compareNames(full, after) <= 0 && !after.startsWith(full)) continue;
          if (!full.startsWith(prefix) && !prefix.startsWith(full)) continue;
          const it = this.walk(diskPath, full, opts);
          const first = await it.next();
          if (!first.done) push({ name: first.value.name, file: first.value.file, it });
        } else if (full.startsWith(prefix) && compareNames(full, after) > 0) {
          push({ name: full, file: diskPath });
        }
      }
      const top = heap.shift();
      if (!top) return;
      yield { name: top.name, file: top.file! };
      if (top.it) {
        const n = await top.it.next();
        if (!n.done) push({ name: n.value.name, file: n.value.file, it: top.it });
      }
    }
  }
}

function commonPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}
