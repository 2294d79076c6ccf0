import { AlreadyExistsError, PreconditionError } from '../errors.js';
import { mapLimit, silentLogger, type Logger } from '../log.js';
import type { Backend, BucketInfo } from '../storage/backend.js';
import { scanUsage, type BucketUsage, type Usage } from './usage.js';

// Per-bucket usage figures, current from the first request after a start
// without scanning buckets (docs/operations.md, "Usage figures").
//
// The engine reports every commit and delete through record(); the totals
// live in memory and in one small record per bucket in the pseudo-bucket
// USAGE (a bucket name cannot start with '.', so it never meets a user
// bucket, and no user key can name it). Instances sharing a backend each
// add their own changes to the record with conditional writes (read, add,
// write If-Match), and re-read it every FLUSH_MS: they agree within about
// twice that. A slow background scan (scanUsage, rate-limited) recounts a
// bucket that has no record at start-up, and every RECONCILE_MS, so that
// drift (a crash between a commit and a flush) does not last.

export const USAGE = '.usage';
export const FLUSH_MS = 10_000;
export const RECONCILE_MS = 24 * 3600_000;
/** Sidecar reads per second of a background reconcile scan. */
export const RECONCILE_READS_PER_SECOND = 200;

interface UsageRecord extends BucketUsage {
  format: 1;
  bucket: string;
  /** The bucket's creation time: a record of a deleted and recreated bucket is void. */
  bucket_created: string;
  updated: string;
  reconciled?: string;
}

interface Entry {
  /** As last read from or written to the record. */
  base: BucketUsage;
  /** This instance's changes not yet in the record. */
  pending: BucketUsage;
  created?: string;
  etag?: string;
  reconciled?: number;
}

const zero = (): BucketUsage => ({ objects: 0, logical: 0, stored: 0 });
const add = (a: BucketUsage, b: BucketUsage, sign = 1): BucketUsage => ({
  objects: a.objects + sign * b.objects,
  logical: a.logical + sign * b.logical,
  stored: a.stored + sign * b.stored,
});
const isZero = (u: BucketUsage) => u.objects === 0 && u.logical === 0 && u.stored === 0;

export class UsageTracker {
  private readonly entries = new Map<string, Entry>();
  /** Buckets found without a record at start-up: their figures need a scan. */
  private readonly unknown = new Set<string>();
  private started = false;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private closed = false;

  constructor(
    private readonly backend: Backend,
    private readonly log: Logger = silentLogger,
  ) {}

  /** The one call the engine makes on every commit and delete. */
  record(bucket: string, before: Usage | null, after: Usage | null): void {
    const e = this.entry(bucket);
    const u = (x: Usage | null): BucketUsage => (x ? { objects: x.objects ?? 1, logical: x.logical, stored: x.stored } : zero());
    e.pending = add(add(e.pending, u(after)), u(before), -1);
  }

  /** A deleted bucket's figures go with it. */
  forget(bucket: string): void {
    this.entries.delete(bucket);
    void this.backend.delete(USAGE, `${bucket}.json`).catch(() => {});
  }

  /** Current figures of every bucket known (record plus unflushed changes). */
  current(): Map<string, BucketUsage> {
    const out = new Map<string, BucketUsage>();
    for (const [b, e] of this.entries) out.set(b, add(e.base, e.pending));
    return out;
  }

  private entry(bucket: string): Entry {
    let e = this.entries.get(bucket);
    if (!e) this.entries.set(bucket, (e = { base: zero(), pending: zero() }));
    return e;
  }

  /** Reads the records (one small read per bucket, no scan) and starts the timers. */
  async start(): Promise<void> {
    await this.sync().catch((err) => this.log.warn({ err }, 'usage figures: cannot read the records yet'));
    this.started = true;
    this.timer = setInterval(() => void this.tick(), FLUSH_MS).unref();
    void this.tick();
  }

  private tick(): Promise<void> {
    if (this.running || this.closed) return this.running ?? Promise.resolve();
    this.running = this.sync()
      .then(() => this.reconcileDue())
      .catch((err) => this.log.warn({ err }, 'usage figures: sync failed'))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** Writes pending changes into the records and reads the others' changes. */
  async sync(): Promise<void> {
    const buckets = await this.backend.listBuckets();
    const names = new Set(buckets.map((b) => b.name));
    for (const b of this.entries.keys()) if (!names.has(b)) this.entries.delete(b);
    await mapLimit(buckets, 8, (b) => this.syncOne(b));
  }

  private async syncOne(info: BucketInfo, attempt = 1): Promise<void> {
    const e = this.entry(info.name);
    const created = info.created.toISOString();
    const blob = await this.backend.readSmall(USAGE, `${info.name}.json`);
    let rec: UsageRecord | null = null;
    try {
      if (blob) rec = JSON.parse(blob.body.toString('utf8')) as UsageRecord;
    } catch {
      rec = null;
    }
    if (rec && rec.bucket_created !== created) rec = null;
    // A bucket without a record at start-up may hold objects written before
    // usage figures existed; one that appears later starts empty here.
    if (!rec && !this.started) this.unknown.add(info.name);
    e.created = created;
    if (rec) e.reconciled = rec.reconciled ? Date.parse(rec.reconciled) : undefined;
    const base = rec ? { objects: rec.objects, logical: rec.logical, stored: rec.stored } : zero();
    if (isZero(e.pending) && (rec || (!blob && this.unknown.has(info.name)))) {
      e.base = base;
      e.etag = blob?.etag;
      return;
    }
    const pending = e.pending;
    const next: UsageRecord = { format: 1, bucket: info.name, bucket_created: created, ...add(base, pending), updated: new Date().toISOString() };
    const reconciled = rec ? rec.reconciled : this.unknown.has(info.name) ? undefined : next.updated;
    if (reconciled) next.reconciled = reconciled;
    try {
      e.etag = await this.backend.putBytes(USAGE, `${info.name}.json`, Buffer.from(JSON.stringify(next)), blob ? { ifMatch: blob.etag } : { ifNoneMatch: true });
      e.base = add(base, pending);
      e.pending = add(e.pending, pending, -1);
      if (reconciled) e.reconciled = Date.parse(reconciled);
    } catch (err) {
      // Another instance wrote meanwhile: read its figures and add ours again.
      if ((err instanceof PreconditionError || err instanceof AlreadyExistsError) && attempt < 5) return this.syncOne(info, attempt + 1);
      throw err;
    }
  }

  /** Reconciles the buckets with no record or an old one, one at a time. */
  private async reconcileDue(): Promise<void> {
    for (const [bucket, e] of this.entries) {
      if (this.closed) return;
      const due = this.unknown.has(bucket) || e.reconciled === undefined || Date.now() - e.reconciled >= RECONCILE_MS;
      if (!due) continue;
      await this.reconcile(bucket);
    }
  }

  /** Recomputes a bucket from its sidecars (slow, rate-limited) and records it. */
  async reconcile(bucket: string, readsPerSecond = RECONCILE_READS_PER_SECOND): Promise<void> {
    const e = this.entry(bucket);
    const info = await this.backend.headBucket(bucket);
    if (!info) return;
    // Changes during the scan may or may not be in it: they are kept pending
    // (counted again) only if made after the scan, which is the usual case
    // for a quiet bucket; the next reconcile settles any difference.
    const pendingBefore = e.pending;
    const scanned = await scanUsage(this.backend, bucket, '', { readsPerSecond, shouldStop: () => this.closed });
    if (this.closed) return;
    const total = { objects: scanned.objects, logical: scanned.logical_bytes, stored: scanned.stored_bytes };
    const now = new Date();
    const rec: UsageRecord = { format: 1, bucket, bucket_created: info.created.toISOString(), ...total, updated: now.toISOString(), reconciled: now.toISOString() };
    e.etag = await this.backend.putBytes(USAGE, `${bucket}.json`, Buffer.from(JSON.stringify(rec)));
    e.base = total;
    e.pending = add(e.pending, pendingBefore, -1);
    e.reconciled = now.getTime();
    this.unknown.delete(bucket);
    this.log.info({ bucket, ...total }, 'usage figures reconciled');
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.closed = true;
    await this.running;
    try {
      await this.sync();
    } catch (err) {
      this.log.warn({ err }, 'usage figures: final flush failed');
    }
  }
}

