import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AlreadyExistsError, BusyError, PreconditionError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Backend } from '../storage/backend.js';
import type { Codec } from './codec.js';
import type { Collector } from './gc.js';
import { deltaspaceOf, newBlobId, objectBlob, objectSidecar } from './keys.js';
import { encodeMeta, parseObjectMeta, type ObjectMeta } from './meta.js';
import type { Objects } from './objects.js';
import type { References } from './references.js';
import { tempPath, type Spooled } from './spool.js';
import { objectUsage, type Usage } from './usage.js';

// Background compaction (`compaction = "background"`). A delta-eligible PUT
// is acknowledged once its bytes are durable as a direct blob; the compactor
// encodes it against the deltaspace's reference afterwards and swaps the
// sidecar to the delta form with If-Match, keeping ETag, Last-Modified and
// block digests. Reads are exact at every moment: before the swap they read
// the direct blob, after it the delta, and the direct blob is retired with
// the usual grace period (./gc.ts), so a read that resolved the old sidecar
// finishes on it.
//
// The work is recorded in the backend, not in memory, so it survives
// restarts: before the commit, the PUT writes a marker
//
//   .compact/<bucket>/<key>.json   {bucket, key, id, created, lease?}
//
// in the pseudo-bucket `.compact` (a bucket name cannot start with '.').
// Every instance lists the markers at start-up and every `scanMs`. An
// instance takes a marker by writing a lease into it with If-Match, so with
// several instances on one backend each object is compacted once; a lease
// whose holder died expires after `leaseMs` (at once on a backend that only
// one instance uses). A marker whose object was
// overwritten or deleted since is stale and removed. The sidecar swap is
// conditional too, so a compaction racing an overwrite loses, never the
// overwrite.
//
// Compaction runs below foreground work: it waits while any codec job is
// queued or the pool is full, runs one object at a time, and its xdelta3
// runs at the lowest CPU priority. Backpressure: when `backlog` objects are
// waiting, PUTs encode inline again rather than let direct bytes pile up.

export const COMPACT = '.compact';

export interface CompactionOptions {
  mode: 'inline' | 'background';
  /** Objects waiting beyond which PUTs encode inline. */
  backlog: number;
  /** How long a taken marker is left alone by other instances. */
  leaseMs?: number;
  /** How often markers are listed from the backend (after one soon after start-up). */
  scanMs?: number;
  /** Tests: record work but never do it (a later instance does). */
  hold?: boolean;
}

interface Marker {
  bucket: string;
  key: string;
  /** The blob id of the direct form this marker asks to compact. */
  id: string;
  created: string;
  lease?: { owner: string; until: number };
}

export interface CompactorDeps {
  backend: Backend;
  codec: Codec;
  refs: References;
  gc: Collector;
  tmpDir: string;
  /** Who takes leases (an instance id unique among the backend's users). */
  owner: string;
  log: Logger;
  usage?: (bucket: string, before: Usage | null, after: Usage | null) => void;
  /**
   * Holds the bucket against DeleteBucket (the engine's bucket lock, as a
   * PUT does) and returns its release, or null when the bucket is gone.
   */
  holdBucket: (bucket: string) => Promise<(() => void) | null>;
}

export interface CompactionStats {
  /** Objects known to wait for compaction. */
  backlog: number;
  compacted: number;
  /** Left direct: the delta was not worth it. */
  kept: number;
  /** Overwritten or deleted before their turn. */
  stale: number;
  failed: number;
}

type Outcome = 'compacted' | 'kept' | 'stale' | 'leased';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

export class Compactor {
  objects?: Objects;
  private readonly queue = new Map<string, { bucket: string; key: string }>();
  private loop?: Promise<void>;
  private readonly ac = new AbortController();
  private timers: NodeJS.Timeout[] = [];
  private readonly counts = { compacted: 0, kept: 0, stale: 0, failed: 0 };

  constructor(
    readonly opts: CompactionOptions,
    private readonly d: CompactorDeps,
  ) {}

  get stats(): CompactionStats {
    return { backlog: this.queue.size, ...this.counts };
  }

  /** Whether a PUT may leave its encoding to the compactor now. */
  accepts(): boolean {
    return this.opts.mode === 'background' && !this.ac.signal.aborted && this.queue.size < this.opts.backlog;
  }

  private static markerName(bucket: string, key: string): string {
    return `${bucket}/${key}.json`;
  }

  /** Records the work before the PUT commits (a crash in between leaves a stale marker, never lost work). */
  async mark(bucket: string, key: string, id: string): Promise<void> {
    const m: Marker = { bucket, key, id, created: new Date().toISOString() };
    await this.d.backend.putBytes(COMPACT, Compactor.markerName(bucket, key), Buffer.from(JSON.stringify(m)));
  }

  enqueue(bucket: string, key: string): void {
    if (this.opts.hold || this.ac.signal.aborted) return;
    this.queue.set(`${bucket}\0${key}`, { bucket, key });
    this.loop ??= this.run().finally(() => (this.loop = undefined));
  }

  start(): void {
    if (this.opts.hold) return;
    const scan = () => void this.scan().catch((err) => this.d.log.warn({ err }, 'compaction scan failed'));
    this.timers.push(setTimeout(scan, 1000).unref(), setInterval(scan, this.opts.scanMs ?? 60_000).unref());
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.ac.abort();
    await this.loop?.catch(() => {});
  }

  /** Finds the work recorded in the backend (other instances', or before a restart). */
  async scan(): Promise<void> {
    for await (const b of this.d.backend.list(COMPACT, { signal: this.ac.signal })) {
      if (!b.name.endsWith('.json')) continue;
      const i = b.name.indexOf('/');
      if (i > 0) this.enqueue(b.name.slice(0, i), b.name.slice(i + 1, -'.json'.length));
    }
  }

  private async run(): Promise<void> {
    while (this.queue.size > 0 && !this.ac.signal.aborted) {
      await this.foregroundIdle();
      const [id, job] = this.queue.entries().next().value!;
      try {
        const outcome = await this.take(job.bucket, job.key);
        if (outcome !== 'leased') this.counts[outcome]++;
      } catch (err) {
        if (this.ac.signal.aborted) break;
        // The marker stays: the next scan tries again.
        if (err instanceof BusyError) continue;
        this.counts.failed++;
        this.d.log.warn({ bucket: job.bucket, key: job.key, err }, 'compaction failed');
      } finally {
        this.queue.delete(id);
      }
    }
  }

  /** Waits while foreground work wants the codec. */
  private async foregroundIdle(): Promise<void> {
    const max = this.d.codec.maxProcesses;
    for (;;) {
      const s = this.d.codec.stats;
      if (this.ac.signal.aborted || (s.queued === 0 && s.running < max)) return;
      await sleep(50);
    }
  }

  /** Takes a marker's lease, compacts, removes the marker. */
  private async take(bucket: string, key: string): Promise<Outcome> {
    const { backend } = this.d;
    const name = Compactor.markerName(bucket, key);
    const blob = await backend.readSmall(COMPACT, name);
    if (!blob) return 'stale';
    let marker: Marker;
    try {
      marker = JSON.parse(blob.body.toString('utf8')) as Marker;
      if (typeof marker.id !== 'string') throw new Error('no id');
    } catch {
      await backend.delete(COMPACT, name, { ifMatch: blob.etag }).catch(() => {});
      return 'stale';
    }
    const now = Date.now();
    // A backend no other instance uses (the filesystem: one instance per data
    // dir, by its lock) can only hold leases of instances that are gone.
    if (backend.shared && marker.lease && marker.lease.owner !== this.d.owner && marker.lease.until > now) return 'leased';
    let etag: string;
    try {
      const leased: Marker = { ...marker, lease: { owner: this.d.owner, until: now + (this.opts.leaseMs ?? 600_000) } };
      etag = await backend.putBytes(COMPACT, name, Buffer.from(JSON.stringify(leased)), { ifMatch: blob.etag });
    } catch (err) {
      if (err instanceof PreconditionError || err instanceof AlreadyExistsError) return 'leased';
      throw err;
    }
    const release = await this.d.holdBucket(bucket);
    let outcome: Outcome = 'stale';
    try {
      if (release) outcome = await this.compact(bucket, key, marker.id);
    } finally {
      release?.();
    }
    // Conditional: a newer PUT of the key may have written its own marker.
    await backend.delete(COMPACT, name, { ifMatch: etag }).catch(() => {});
    return outcome;
  }

  private async compact(bucket: string, key: string, id: string): Promise<Outcome> {
    const objects = this.objects!;
    const { backend, refs, gc } = this.d;
    const cur = (await objects.resolve(bucket, key)).v2;
    const meta = cur?.meta;
    const first = meta?.stored[0];
    if (!cur || !meta || !meta.pending || first?.kind !== 'direct' || first.blob !== objectBlob(key, 'direct', id)) return 'stale';
    const space = deltaspaceOf(key);
    const settled = (m: ObjectMeta): ObjectMeta => {
      const { pending: _p, ...rest } = m;
      void _p;
      return rest;
    };
    const release = await objects.spaceLocks.read(`${bucket}\0${space}`);
    let body: Spooled | undefined;
    let collect = false;
    try {
      body = await this.localCopy(bucket, meta, first.blob as string);
      const r = await objects.storeDelta(bucket, key, space, body, newBlobId(), undefined, { signal: this.ac.signal, background: true });
      collect = r.seeded && !r.written;
      // The codec pool was full after all: the object stays pending.
      if (r.busy) throw new BusyError('codec queue full', 1);
      if (!r.written) {
        // Not worth a delta: stays direct, no longer pending.
        await backend.putBytes(bucket, objectSidecar(key), encodeMeta(settled(meta)), { ifMatch: cur.etag }).catch((err) => {
          if (!(err instanceof PreconditionError)) throw err;
        });
        return 'kept';
      }
      const next = parseObjectMeta(encodeMeta({ ...settled(meta), stored: [r.written.form] }));
      const made = [r.written.form.blob as string];
      let etag: string;
      try {
        etag = await backend.putBytes(bucket, objectSidecar(key), encodeMeta(next), { ifMatch: cur.etag });
      } catch (err) {
        for (const n of made) await backend.delete(bucket, n).catch(() => {});
        if (err instanceof PreconditionError) {
          collect ||= r.seeded;
          return 'stale';
        }
        throw err;
      }
      if (r.written.ref && !(await refs.confirm(bucket, space, r.written.ref))) {
        // Another instance is collecting the reference: back to the direct form.
        await backend.putBytes(bucket, objectSidecar(key), encodeMeta(settled(meta)), { ifMatch: etag });
        gc.retire(bucket, made);
        collect = true;
        return 'kept';
      }
      if (backend.shared && !(await backend.headBucket(bucket))) {
        // DeleteBucket through another instance meanwhile: take the swap
        // back rather than leave blobs in a bucket that is gone (as a PUT does).
        await backend.delete(bucket, objectSidecar(key)).catch(() => {});
        for (const n of made) await backend.delete(bucket, n).catch(() => {});
        return 'stale';
      }
      gc.retire(bucket, [first.blob as string]);
      this.d.usage?.(bucket, objectUsage(meta), objectUsage(next));
      return 'compacted';
    } finally {
      release();
      await body?.dispose();
      if (collect) await objects.collectReference(bucket, space);
    }
  }

  /**
   * The direct blob as a local file, its SHA-256 checked (a damaged blob is
   * left as it is, for scrub to report, never baked into a delta).
   */
  private async localCopy(bucket: string, meta: ObjectMeta, blob: string): Promise<Spooled> {
    const { backend } = this.d;
    const sha = createHash('sha256');
    const local = backend.localPath?.(bucket, blob);
    let file = local;
    if (local) {
      for await (const c of (await fsp.open(local)).createReadStream()) sha.update(c as Buffer);
    } else {
      file = tempPath(this.d.tmpDir, 'compact');
      const { body } = await backend.getStream(bucket, blob, { signal: this.ac.signal });
      const hash = new Transform({
        transform(chunk: Buffer, _e, cb) {
          sha.update(chunk);
          cb(null, chunk);
        },
      });
      try {
        await pipeline(body, hash, createWriteStream(file));
      } catch (err) {
        await fsp.rm(file, { force: true });
        throw err;
      }
    }
    const dispose = () => (local ? Promise.resolve() : fsp.rm(file!, { force: true }));
    if (sha.digest('hex') !== meta.sha256) {
      await dispose();
      throw new Error(`${bucket}/${meta.key}: stored direct blob does not match its SHA-256; left for scrub`);
    }
    return { path: file!, size: meta.size, sha256: meta.sha256, md5: meta.md5, extra: {}, blocks: Buffer.alloc(0), dispose };
  }
}
