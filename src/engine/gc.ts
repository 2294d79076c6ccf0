import type { Logger } from '../log.js';
import type { Backend } from '../storage/backend.js';
import { META_SUFFIX, objectSidecar, parseBlobName, referenceRecord, spacePrefix } from './keys.js';
import { parseReferenceMeta, type ObjectMeta } from './meta.js';

// Garbage collection of immutable blobs (storage format 2).
//
// A blob becomes garbage when a commit replaces the sidecar that named it, or
// when a writer dies between writing it and committing. Replaced blobs are
// removed GRACE after the commit that replaced them, so a reader that resolved
// the old sidecar just before still finds its bytes (on the filesystem an
// open file descriptor keeps reading even after that). Crash leftovers are
// found by a sweep that lists a bucket and removes format 2 blobs no sidecar
// or reference record names, once they are older than ORPHAN_AGE: a writer
// commits within seconds of writing its blob, so an unnamed blob that old is
// no upload in flight, in this instance or in another sharing the backend.

export interface GcOptions {
  /** Delay before a replaced blob is removed. */
  graceMs: number;
  /** Age after which an unnamed blob is a crash leftover. */
  orphanAgeMs: number;
}

export interface SweepResult {
  scanned: number;
  removed: number;
  /** Deltaspaces that lost a delta blob (their reference may be unused now). */
  spaces: string[];
}

export class Collector {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly due: { bucket: string; name: string }[] = [];

  /** Called after a delta blob is removed: its deltaspace's reference may be unused now. */
  onDeltaRemoved?: (bucket: string, space: string) => Promise<void>;

  constructor(
    private readonly backend: Backend,
    readonly opts: GcOptions,
    private readonly log: Logger,
  ) {}

  /** Removes `names` after the grace period (best effort: the sweep catches what a crash drops). */
  retire(bucket: string, names: string[]): void {
    if (names.length === 0) return;
    const items = names.map((name) => ({ bucket, name }));
    this.due.push(...items);
    const t = setTimeout(() => {
      this.timers.delete(t);
      void this.remove(items);
    }, this.opts.graceMs);
    t.unref();
    this.timers.add(t);
  }

  private async remove(items: { bucket: string; name: string }[]): Promise<void> {
    for (const it of items) {
      const i = this.due.indexOf(it);
      if (i >= 0) this.due.splice(i, 1);
      try {
        await this.backend.delete(it.bucket, it.name);
      } catch (err) {
        this.log.warn({ err, bucket: it.bucket, blob: it.name }, 'could not remove a replaced blob; the sweep will');
        continue;
      }
      const p = parseBlobName(it.name);
      if (p && p.role === 'delta') await this.onDeltaRemoved?.(it.bucket, spaceOf(p.key)).catch(() => {});
    }
  }

  /** Runs every pending removal now, and those they lead to (tests; `scrub --gc`). */
  async drain(): Promise<void> {
    while (this.due.length > 0) {
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      await this.remove([...this.due]);
    }
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /**
   * Removes crash leftovers in one bucket: format 2 blobs no sidecar or
   * reference record names, and format 1 data blobs without a sidecar, once
   * older than ORPHAN_AGE. Reads one sidecar per candidate, in batches, so
   * memory stays bounded whatever the bucket's size.
   */
  async sweep(bucket: string, readSidecar: (key: string) => Promise<ObjectMeta | null>, signal?: AbortSignal): Promise<SweepResult> {
    const cutoff = Date.now() - this.opts.orphanAgeMs;
    let scanned = 0;
    let removed = 0;
    let batch: string[] = [];
    const spaces = new Set<string>();
    const flush = async () => {
      const names = batch;
      batch = [];
      for (const name of names) {
        signal?.throwIfAborted();
        if (!(await this.isOrphan(bucket, name, readSidecar))) continue;
        await this.backend.delete(bucket, name);
        removed++;
        const p = parseBlobName(name);
        if (p && p.role === 'delta') spaces.add(spaceOf(p.key));
        this.log.info({ bucket, blob: name }, 'removed an unreferenced blob');
      }
    };
    for await (const b of this.backend.list(bucket, { signal })) {
      scanned++;
      if (b.lastModified.getTime() > cutoff) continue;
      if (parseBlobName(b.name) || /\.(delta|direct)$/.test(b.name)) batch.push(b.name);
      if (batch.length >= 1000) await flush();
    }
    await flush();
    return { scanned, removed, spaces: [...spaces] };
  }

  private async isOrphan(bucket: string, name: string, readSidecar: (key: string) => Promise<ObjectMeta | null>): Promise<boolean> {
    const p = parseBlobName(name);
    if (!p) {
      // Format 1 data `K.delta` / `K.direct`: garbage without its sidecar.
      // (`reference.bin` has no such suffix; its collection is References'.)
      return !(await this.backend.head(bucket, name + META_SUFFIX));
    }
    if (p.role !== 'reference') {
      const meta = await readSidecar(p.key).catch(() => null);
      if (meta === null) {
        // Unreadable is not absent: only a missing sidecar frees the blob.
        return !(await this.backend.head(bucket, objectSidecar(p.key)));
      }
      return !namesOf(meta).has(name);
    }
    const rec = await this.backend.readSmall(bucket, referenceRecord(p.space));
    if (rec) {
      try {
        if (parseReferenceMeta(rec.body).blob === name) return false;
      } catch {
        return false;
      }
    }
    // A reference no record names may still serve deltas written against it.
    for await (const b of this.backend.list(bucket, { prefix: spacePrefix(p.space), shallow: true })) {
      const d = parseBlobName(b.name);
      if (!d || d.role !== 'delta') continue;
      const meta = await readSidecar(d.key).catch(() => undefined);
      if (meta === undefined) return false;
      // Every form with a reference (delta, gzip) keeps it.
      if (meta?.stored.some((f) => (f as { reference?: { blob?: string } }).reference?.blob === name)) return false;
    }
    return true;
  }
}

function spaceOf(key: string): string {
  const i = key.lastIndexOf('/');
  return i < 0 ? '' : key.slice(0, i);
}

/** Every blob a sidecar names. */
export function namesOf(meta: ObjectMeta): Set<string> {
  const out = new Set<string>();
  for (const f of meta.stored) if (typeof f.blob === 'string') out.add(f.blob);
  if (meta.blocks?.blob) out.add(meta.blocks.blob);
  return out;
}
