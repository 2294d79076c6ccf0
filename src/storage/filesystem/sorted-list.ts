import type { BigIntStats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import type { SortedListOptions } from '../backend.js';
import { INTERNAL_PREFIX, decodeComponents, encodePrefixDir } from './names.js';
import { ExternalSort, IndexWriteError, indexWrite } from './external-sort.js';
import { FileDir, MemoryDir, compareEntries, compareFast, compareNames, entryBytes, entryOf, startIndices, type DirEntry, type SortedDir } from './sorted-dir.js';

export { compareNames };

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
//
// A directory of more than `memoryEntries` entries, or whose entries take
// more than `spillBytes` in memory, is not held in memory but sorted
// externally into an index file under `indexDir` (./sorted-dir.ts): derived
// data, removed when its cache entry goes and at start-up. When the index
// cannot be written (a full disk), a directory is sorted in memory if it fits
// the directory cache (and kept there), and its listing fails otherwise: a
// directory the cache cannot keep would be read and sorted again for every page.

/** Directories written this recently are read again: mtime granularity (coarse clocks, 1 s on some filesystems). */
const RACY_MS = 2500;

export interface SortedEntry {
  name: string;
  /** Absolute path of the file. */
  file: string;
}

export interface SortedListerOptions {
  /** Where index files of big directories go; without it every directory is sorted in memory. */
  indexDir?: string;
  /** Directories of up to this many (listed) entries are sorted in memory; bigger ones into an index file. */
  memoryEntries?: number;
  /**
   * Bytes of entries above which a directory goes to an index file too, and a
   * run of the external sort is cut. Default a quarter of `memoryBytes`: a
   * directory sorted in memory is then always kept in the directory cache,
   * next to others, instead of read again for every page (150,000 long
   * escaped names can take 40-165 MB).
   */
  spillBytes?: number;
  /** Entries per sorted run of an external sort (memory while reading a big directory). */
  runEntries?: number;
  /** Entries per block of an index file. */
  blockEntries?: number;
  /** Bytes of directories kept in memory (in-memory ones whole, index files by their block headers). */
  memoryBytes?: number;
  /** Bytes of decoded index blocks kept in memory. */
  blockBytes?: number;
}

export class SortedLister {
  private readonly dirs: LRUCache<string, SortedDir>;
  private readonly blocks: LRUCache<string, DirEntry[]>;
  private readonly reading = new Map<string, { stamp: string; waiters: number; done: Promise<SortedDir | null> }>();
  private readonly opts: Required<Omit<SortedListerOptions, 'indexDir'>> & { indexDir?: string };
  /** Bumped by close() and init(): a read started before then is not kept, nor one ending while closed. */
  private generation = 0;
  private closed = false;
  private readCount = 0;

  constructor(opts: SortedListerOptions = {}) {
    const memoryBytes = opts.memoryBytes ?? 64 << 20;
    this.opts = { memoryEntries: 150_000, spillBytes: Math.floor(memoryBytes / 4), runEntries: 100_000, blockEntries: 512, memoryBytes, blockBytes: 8 << 20, ...opts };
    // A cached index file weighs at least 1/64 of the budget, whatever its
    // few block headers take: each holds an open file handle and its file on
    // disk, so at most 64 are kept.
    const minFileDir = Math.ceil(this.opts.memoryBytes / 64);
    this.dirs = new LRUCache<string, SortedDir>({
      maxSize: this.opts.memoryBytes,
      sizeCalculation: (d) => Math.max(1, d.bytes, d instanceof FileDir ? minFileDir : 0),
      dispose: (d) => d.drop(),
    });
    this.blocks = new LRUCache<string, DirEntry[]>({
      maxSize: this.opts.blockBytes,
      sizeCalculation: (b) => b.reduce((n, e) => n + entryBytes(e), 64),
    });
  }

  /** Directories read from disk so far (neither cached nor joining a read under way). */
  get reads(): number {
    return this.readCount;
  }

  /** Removes index files a previous run left (at start-up: nothing refers to them). */
  async init(): Promise<void> {
    if (!this.opts.indexDir) return;
    this.generation++;
    this.closed = false;
    this.dirs.clear();
    await fsp.rm(this.opts.indexDir, { recursive: true, force: true });
    await fsp.mkdir(this.opts.indexDir, { recursive: true });
  }

  /** Lets go of cached directories (their index files go once no listing holds them). */
  close(): void {
    this.generation++;
    this.closed = true;
    this.dirs.clear();
    this.blocks.clear();
  }

  /** The files below `bucketDir` whose names start with `prefix`, after `startAfter`, in order. */
  async *list(bucketDir: string, opts: SortedListOptions): AsyncIterable<SortedEntry> {
    const comps = encodePrefixDir(opts.prefix);
    const base = comps.length === 0 ? '' : decodeComponents([...comps, ''])!;
    yield* this.walk(path.join(bucketDir, ...comps), base, opts);
  }

  /** The directory's entries in order, held for the caller (who must release it). */
  private async read(dir: string, suffixes: string[] | undefined): Promise<SortedDir | null> {
    const id = suffixes ? `${dir}\0${suffixes.join('\0')}` : dir;
    const generation = this.generation;
    let st;
    try {
      st = await fsp.stat(dir, { bigint: true });
    } catch (err) {
      if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return null;
      throw err;
    }
    const stamp = `${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
    const hit = this.dirs.get(id);
    if (hit && hit.stamp === stamp) {
      hit.hold();
      return hit;
    }
    // Listings arriving while the directory is read (a burst after a
    // restart) wait for that one read rather than each making their own.
    const pending = this.reading.get(id);
    if (pending && pending.stamp === stamp) {
      pending.waiters++;
      return pending.done;
    }
    const entry = { stamp, waiters: 0, done: Promise.resolve<SortedDir | null>(null) };
    entry.done = this.readAndKeep(id, dir, suffixes, stamp, st, entry, generation);
    this.reading.set(id, entry);
    return entry.done;
  }

  private async readAndKeep(id: string, dir: string, suffixes: string[] | undefined, stamp: string, st: BigIntStats, entry: { waiters: number }, generation: number): Promise<SortedDir | null> {
    this.readCount++;
    try {
      const started = Date.now();
      let sorted;
      try {
        sorted = await this.readDir(dir, suffixes, stamp);
      } catch (err) {
        // No room for the index (a full disk): sorted in memory if small
        // enough, as a listing should not fail for want of derived data.
        if (!(err instanceof IndexWriteError)) throw err;
        sorted = await this.readDir(dir, suffixes, stamp, err);
      }
      if (!sorted) return null;
      // Held for each listing waiting, before any of them can let go.
      for (let i = 0; i <= entry.waiters; i++) sorted.hold();
      // A directory changed in the last instants may change again within its
      // mtime's granularity: such a listing is used once, not kept.
      const changed = st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs;
      // Closed meanwhile (or closed and started again): kept, it would hold
      // its index file until the process exits; the cache is not ours to touch.
      if (generation === this.generation && !this.closed) {
        if (Number(changed / 1_000_000n) < started - RACY_MS) this.dirs.set(id, sorted);
        else this.dirs.delete(id);
      }
      // Not kept (racy, closed, or bigger than the whole budget): its index goes after these listings.
      if (this.dirs.peek(id) !== sorted) sorted.drop();
      return sorted;
    } finally {
      if (this.reading.get(id) === entry) this.reading.delete(id);
    }
  }

  /** Sorted into an index file when big, unless that failed (`noIndex`): then in memory, up to the cache's size. */
  private async readDir(dir: string, suffixes: string[] | undefined, stamp: string, noIndex?: IndexWriteError): Promise<SortedDir | null> {
    let handle;
    try {
      handle = await fsp.opendir(dir, { bufferSize: 1024 });
    } catch (err) {
      if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return null;
      throw err;
    }
    const { indexDir, memoryEntries, spillBytes, runEntries, blockEntries, memoryBytes } = this.opts;
    const spill = indexDir !== undefined && !noIndex;
    let items: DirEntry[] = [];
    let bytes = 0;
    let wide = false;
    let external: ExternalSort | undefined;
    try {
      for await (const ent of handle) {
        const name = ent.name;
        if (name.startsWith(INTERNAL_PREFIX)) continue;
        const dirent = ent.isDirectory();
        if (!dirent && !ent.isFile()) continue;
        const e = entryOf(name, dirent);
        if (e === null) continue;
        // The last piece of a cut name may hold only the end of a suffix
        // ('ta' of '.meta'): kept, the filter is a hint (Backend.listSorted).
        if (!dirent && suffixes && !suffixes.some((s) => e.rel.endsWith(s) || s.endsWith(e.rel))) continue;
        if (!wide && /[\ud800-\udfff]/.test(e.rel)) wide = true;
        items.push(e);
        bytes += entryBytes(e);
        if (spill && (items.length > (external ? runEntries : memoryEntries) || bytes > spillBytes)) {
          external ??= new ExternalSort({ indexDir, blockEntries, blocks: this.blocks });
          await indexWrite(external.addRun(items, !wide));
          wide = false;
          bytes = 0;
        } else if (!spill && bytes > memoryBytes) {
          // Not kept by the cache, so sorted again for every page: refused.
          // A plain error, which S3 clients get as a 500 InternalError (and retry), logged with its cause.
          const why = noIndex ? `its index file cannot be written (${noIndex.message})` : 'there is no index directory';
          throw new Error(`sorted listing: ${dir} takes more than the directory cache (${memoryBytes} bytes) to sort in memory, and ${why}`, { cause: noIndex });
        }
      }
      if (!external) return new MemoryDir(stamp, items.sort(wide ? compareEntries : compareFast), bytes);
      if (items.length > 0) await indexWrite(external.addRun(items, !wide));
      items = [];
      return await indexWrite(external.finish(stamp));
    } catch (err) {
      await external?.discard();
      throw err;
    }
  }

  private async *walk(dir: string, base: string, opts: SortedListOptions): AsyncGenerator<SortedEntry> {
    const d = await this.read(dir, opts.suffixes);
    if (!d) return;
    type Head = { name: string; file?: string; it?: AsyncGenerator<SortedEntry> };
    const heap: Head[] = []; // ascending by name; tiny (entries whose ranges overlap)
    try {
      if (d.length === 0) return;
      const { prefix } = opts;
      const after = opts.startAfter ?? '';
      const bound = compareNames(after, prefix) > 0 ? after : prefix;
      let seq: number[];
      if (bound.startsWith(base)) seq = await startIndices(d, bound.slice(base.length));
      else if (compareNames(bound, base) < 0) seq = [0];
      else return;
      // seq: explicit indices, the last of which continues to the end.
      let si = 0;
      let next: number | undefined = seq[0];
      const advance = () => {
        if (next === undefined) return;
        if (si < seq.length - 1) next = seq[++si];
        else next = next + 1 < d.length ? next + 1 : undefined;
      };
      const push = (h: Head) => {
        let at = heap.length;
        while (at > 0 && compareNames(heap[at - 1].name, h.name) > 0) at--;
        heap.splice(at, 0, h);
      };
      for (;;) {
        opts.signal?.throwIfAborted();
        while (next !== undefined) {
          const e = d.at(next) ?? (await d.load(next));
          const full = base + e.rel;
          if (heap.length > 0 && compareNames(full, heap[0].name) > 0) break;
          advance();
          // Everything from here on sorts above the prefix without starting with it.
          if (!full.startsWith(prefix) && compareNames(full, prefix) > 0) {
            next = undefined;
            break;
          }
          const diskPath = path.join(dir, e.disk ?? e.rel);
          if (e.dir) {
            if (compareNames(full, after) <= 0 && !after.startsWith(full)) continue;
            if (!full.startsWith(prefix) && !prefix.startsWith(full)) continue;
            const it = this.walk(diskPath, full, opts);
            const first = await it.next();
            if (!first.done) push({ name: first.value.name, file: first.value.file, it });
          } else if (full.startsWith(prefix) && compareNames(full, after) > 0) {
            push({ name: full, file: diskPath });
          }
        }
        const top = heap[0];
        if (!top) return;
        // Still on the heap while suspended here, so that an early return closes its walk.
        yield { name: top.name, file: top.file! };
        heap.shift();
        if (top.it) {
          const n = await top.it.next();
          if (!n.done) push({ name: n.value.name, file: n.value.file, it: top.it });
        }
      }
    } finally {
      // Stopped early (a full page): the walks below let go of their directories too.
      try {
        for (const h of heap) await h.it?.return(undefined);
      } finally {
        d.release();
      }
    }
  }
}
