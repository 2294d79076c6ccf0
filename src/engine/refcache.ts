import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LRUCache } from 'lru-cache';
import { NotFoundError } from '../errors.js';
import type { Backend } from '../storage/backend.js';
import { tempPath } from './spool.js';
import { IntegrityError } from './verify.js';

// Local copies of references, for xdelta3 to read as files. An LRU bounded in
// bytes (config cache_size_mb) keeps hot references; entries in use by a
// running encode/decode are never unlinked under it (reference counting).
// With the filesystem backend the reference is read in place (format 2 blobs
// are immutable), so the cache costs no disk there.

interface Entry {
  path: string;
  size: number;
  users: number;
  evicted: boolean;
}

export interface RefHandle {
  path: string;
  size: number;
  release(): void;
}

export class ReferenceCache {
  private readonly lru: LRUCache<string, Entry>;
  private readonly inflight = new Map<string, Promise<Entry>>();
  /** Counters for metrics. */
  hits = 0;
  misses = 0;

  constructor(
    private readonly dir: string,
    maxBytes: number,
    private readonly backend: Backend,
  ) {
    this.lru = new LRUCache<string, Entry>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (e) => Math.max(1, e.size),
      dispose: (e) => {
        e.evicted = true;
        if (e.users === 0) void fsp.rm(e.path, { force: true });
      },
    });
  }

  private static id(bucket: string, blob: string, sha: string): string {
    return `${bucket}\0${blob}\0${sha}`;
  }

  /** A local file holding the reference blob `blob` whose SHA-256 is `sha`. */
  async acquire(bucket: string, blob: string, sha: string, signal?: AbortSignal): Promise<RefHandle> {
    const local = this.backend.localPath?.(bucket, blob);
    if (local) {
      // Format 2 blobs are immutable and removed only after a grace period,
      // so the backend's own file serves in place: no copy, no disk. What is
      // decoded against it is verified by its own digests.
      let size: number;
      try {
        size = (await fsp.stat(local)).size;
      } catch {
        throw new NotFoundError(`${bucket}/${blob}`);
      }
      this.hits++;
      return { path: local, size, release: () => {} };
    }
    const id = ReferenceCache.id(bucket, blob, sha);
    let entry = this.lru.get(id);
    if (entry) this.hits++;
    if (!entry) {
      this.misses++;
      let p = this.inflight.get(id);
      if (!p) {
        // The shared download is not tied to any one reader: one client's
        // abort must not fail the others waiting on it.
        p = this.fetch(bucket, blob, sha).finally(() => this.inflight.delete(id));
        this.inflight.set(id, p);
      }
      entry = await abortable(p, signal);
      if (!entry.evicted && !this.lru.has(id)) this.lru.set(id, entry);
      // Too large for the budget: lru-cache refused it; the handle owns it.
      if (!this.lru.has(id)) entry.evicted = true;
    }
    return this.handle(entry);
  }

  /** Seeds the cache from a local file known to hold the reference. */
  async adopt(bucket: string, blob: string, sha: string, size: number, file: string): Promise<void> {
    if (this.backend.localPath) return; // read in place (acquire)
    const id = ReferenceCache.id(bucket, blob, sha);
    if (this.lru.has(id)) return;
    const target = tempPath(this.dir, 'ref');
    await linkOrCopy(file, target);
    this.lru.set(id, { path: target, size, users: 0, evicted: false });
    if (!this.lru.has(id)) await fsp.rm(target, { force: true });
  }

  private handle(e: Entry): RefHandle {
    e.users++;
    let done = false;
    return {
      path: e.path,
      size: e.size,
      release: () => {
        if (done) return;
        done = true;
        e.users--;
        if (e.users === 0 && e.evicted) void fsp.rm(e.path, { force: true });
      },
    };
  }

  private async fetch(bucket: string, blob: string, sha: string): Promise<Entry> {
    const target = tempPath(this.dir, 'ref');
    const { body } = await this.backend.getStream(bucket, blob, {});
    const hash = createHash('sha256');
    let n = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _e, cb) {
        hash.update(chunk);
        n += chunk.length;
        cb(null, chunk);
      },
    });
    try {
      await pipeline(body, tap, createWriteStream(target));
      const got = hash.digest('hex');
      if (got !== sha) throw new IntegrityError(`reference ${bucket}/${blob}: SHA-256 ${got}, expected ${sha}`);
    } catch (err) {
      await fsp.rm(target, { force: true });
      throw err;
    }
    return { path: target, size: n, users: 0, evicted: false };
  }

  clear(): void {
    this.lru.clear();
  }
}

/** Waits for `p` unless `signal` aborts first (the work behind `p` goes on). */
function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await fsp.link(from, to);
  } catch {
    await fsp.copyFile(from, to);
  }
}
