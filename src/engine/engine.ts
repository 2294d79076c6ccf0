import * as fsp from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { AlreadyExistsError, NotEmptyError, NotFoundError, S3Error } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Backend, BucketInfo, ByteRange } from '../storage/backend.js';
import { Codec } from './codec.js';
import { Compactor } from './compaction.js';
import { copyObject, type CopyInput } from './copy.js';
import { checkBucketName, checkKey, deltaspaceOf, isBucketName, keyOfMetaBlob, newBlobId } from './keys.js';
import { KeyedRwLock } from '../locks.js';
import { Lister, type ListInput, type ListResult } from './list.js';
import type { ObjectMeta } from './meta.js';
import { Multipart } from './multipart.js';
import { Objects, type Resolved } from './objects.js';
import { prepareDelta } from './pre-encode.js';
import { openStored } from './read.js';
import { IntegrityError } from './verify.js';
import { ReferenceCache } from './refcache.js';
import { References } from './references.js';
import { FileRouter } from './router.js';
import { SmallObjectCache } from './small-cache.js';
import { Collector } from './gc.js';
import { DecodedCache } from './decoded-cache.js';
import { GZIP_DEFAULTS, GzipKind } from './gzip-form.js';
import { UsageTracker } from './usage-tracker.js';
import type { BucketUsage } from './usage.js';
import { CliLayout } from './cli-layout/layout.js';
import { checkCliKey, checkUserMetadata } from './cli-layout/names.js';
import { spool, type SpoolOptions, type Spooled } from './spool.js';
import type { EngineOptions, ObjectStore, PreEncode, PutInput } from './types.js';

export type { EngineOptions, ObjectAttributes, PreEncode, PutInput } from './types.js';

const BUCKET_TTL_MS = 2000;
/**
 * How long peekObject takes a sidecar it checked as still current without a
 * stat, while nothing is written (./objects.ts peek): the stat was a tenth
 * of a small HEAD's CPU. Within the bucket TTL, the staleness already
 * allowed for a bucket removed beside the proxy.
 */
const HEAD_TRUST_MS = 1000;

/**
 * The delta engine. HTTP code calls its methods with typed inputs; it calls
 * the backend. Objects are stored in format 2 (./objects.ts,
 * docs/storage-format.md): immutable blobs, one sidecar per object as the
 * commit point, replaced blobs collected after a grace period (./gc.ts).
 */
export class Engine implements ObjectStore {
  readonly codec: Codec;
  readonly router: FileRouter;
  readonly multipart: Multipart;
  readonly gc: Collector;
  /** Per-bucket usage figures (./usage-tracker.ts): told of every commit and delete. */
  readonly usage: UsageTracker;
  /** Background delta encoding (./compaction.ts); idle with `compaction = "inline"`. */
  readonly compactor: Compactor;
  private readonly cache: ReferenceCache;
  private readonly decoded: DecodedCache;
  private readonly refs: References;
  private readonly objects: Objects;
  /** The gzip stored form: written only when its start-up self-test passes. */
  private readonly gzip: GzipKind;
  private readonly lister: Lister;
  /** Small objects decoded and verified, in memory (./small-cache.ts). */
  private readonly small = new SmallObjectCache();
  private readonly keyLocks = new KeyedRwLock();
  private readonly buckets = new Map<string, { info: BucketInfo; until: number }>();
  /** Held for reading by every object write; DeleteBucket takes it for writing. */
  private readonly bucketLocks = new KeyedRwLock();
  private timers: NodeJS.Timeout[] = [];
  /** Buckets deleted through this instance: a write that waited on the bucket lock checks again. */
  private readonly removed = new Set<string>();
  /** Buckets in the DeltaGlider CLI's layout (./cli-layout/), when configured. */
  private readonly cli?: CliLayout;

  constructor(
    readonly backend: Backend,
    readonly opts: EngineOptions,
    private readonly log: Logger = silentLogger,
  ) {
    this.codec = new Codec(opts.codec);
    this.router = new FileRouter(opts.deltaExtensions);
    this.cache = new ReferenceCache(opts.cacheDir, opts.cacheBytes, backend);
    this.decoded = new DecodedCache(path.join(opts.cacheDir, 'decoded'), opts.decodedCacheBytes ?? 1 << 30);
    this.gc = new Collector(backend, { graceMs: opts.blobGraceMs ?? 60_000, orphanAgeMs: opts.orphanAgeMs ?? 3600_000 }, log);
    this.refs = new References(backend, this.cache, opts.toolVersion, log, this.gc);
    this.usage = new UsageTracker(backend, log);
    this.gzip = new GzipKind({ backend, refs: this.refs, codec: this.codec, tmpDir: opts.tmpDir, maxDeltaRatio: opts.maxDeltaRatio, log }, { ...GZIP_DEFAULTS, ...opts.gzip });
    const usage = this.usage.record.bind(this.usage);
    this.compactor = new Compactor(opts.compaction ?? { mode: 'inline', backlog: 0 }, { backend, codec: this.codec, refs: this.refs, gc: this.gc, tmpDir: opts.tmpDir, owner: `${hostname()}:${process.pid}:${newBlobId()}`, log, usage,
      holdBucket: async (bucket) => {
        const release = await this.bucketLocks.read(bucket);
        if (await this.backend.headBucket(bucket)) return release;
        release();
        return null;
      },
    });
    this.objects = new Objects({ backend, refs: this.refs, codec: this.codec, router: this.router, gc: this.gc, gzip: this.gzip, compactor: this.compactor, opts, log, usage });
    this.compactor.objects = this.objects;
    this.gc.onDeltaRemoved = (bucket, space) => this.objects.collectReference(bucket, space);
    this.multipart = new Multipart(backend, this, log);
    this.lister = new Lister(backend, (b) => this.headBucket(b), (b, k) => this.findObject(b, k));
    if (opts.cliLayout) this.cli = new CliLayout(opts.cliLayout, { codec: this.codec, router: this.router, opts, log });
  }

  get tmpDir(): string {
    return this.opts.tmpDir;
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.opts.tmpDir, { recursive: true });
    // Temp and cache files of a previous run are never valid now.
    await fsp.rm(this.opts.cacheDir, { recursive: true, force: true });
    await fsp.mkdir(path.join(this.opts.cacheDir, 'decoded'), { recursive: true });
    await this.cli?.init();
    for (const f of await fsp.readdir(this.opts.tmpDir)) await fsp.rm(`${this.opts.tmpDir}/${f}`, { force: true, recursive: true });
    await this.backend.init();
    await this.gzip.init();
    // Abandoned multipart uploads: swept at start-up, then hourly.
    const sweepUploads = () => this.multipart.sweep(this.opts.multipartMaxAgeMs).catch((err) => this.log.warn({ err }, 'multipart sweep failed'));
    await sweepUploads();
    this.timers.push(setInterval(sweepUploads, Math.min(3600_000, this.opts.multipartMaxAgeMs)).unref());
    await this.usage.start();
    // CLI buckets have no usage records: counted in the background, then hourly.
    this.cli?.startUsage();
    // Compaction work recorded in the backend (before a restart, or by other instances).
    this.compactor.start();
    // Crash leftovers: a background sweep soon after start-up, then periodically.
    const every = this.opts.sweepIntervalMs ?? 24 * 3600_000;
    if (every > 0) {
      const run = () => void this.sweep().catch((err) => this.log.warn({ err }, 'blob sweep failed'));
      this.timers.push(setTimeout(run, 60_000).unref(), setInterval(run, every).unref());
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    await this.compactor.stop();
    this.gc.stop();
    this.cache.clear();
    this.decoded.clear();
    await this.usage.close();
    this.cli?.close();
    await this.backend.close();
  }

  /** Usage figures of every bucket: native ones as recorded, CLI-layout ones as last counted. */
  usageFigures(): Map<string, BucketUsage> {
    const all = this.usage.current();
    if (this.cli) for (const [b, u] of this.cli.usage()) all.set(b, u);
    return all;
  }

  /** Counts the CLI-layout buckets now (also done hourly in the background); `headsPerSecond` for tests. */
  countCliUsage(headsPerSecond?: number): Promise<void> {
    return this.cli?.countUsage(headsPerSecond) ?? Promise.resolve();
  }

  /** Reference cache hits and misses since start (metrics). */
  get referenceCacheStats(): { hits: number; misses: number } {
    return { hits: this.cache.hits, misses: this.cache.misses };
  }

  // ---- buckets ----------------------------------------------------------

  async listBuckets(): Promise<BucketInfo[]> {
    const native = await this.backend.listBuckets();
    if (!this.cli) return native;
    const cli = await this.cli.listBuckets();
    return [...native.filter((b) => !this.cli!.has(b.name)), ...cli].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async createBucket(bucket: string, opts: { location?: string } = {}): Promise<void> {
    checkBucketName(bucket);
    // A new bucket starts with no upload in progress, whatever an earlier
    // bucket of its name left behind: those listed before it is made
    // (./multipart.ts, removeUploadsOf).
    const leftover = await this.multipart.uploadIdsOf(bucket);
    if (this.cli?.has(bucket)) {
      await this.cli.createBucket(bucket);
    } else {
      this.removed.delete(bucket);
      try {
        await this.backend.createBucket(bucket, opts);
        this.usage.record(bucket, null, null); // a new bucket: known, at zero
      } catch (err) {
        if (err instanceof AlreadyExistsError) throw new S3Error('BucketAlreadyOwnedByYou', undefined, { fields: { BucketName: bucket } });
        throw err;
      }
    }
    await this.multipart.removeUploadsOf(bucket, leftover);
  }

  /**
   * Every object request checks its bucket. A bucket seen in the last few
   * seconds is taken as still there, which saves a backend request per
   * object request (a HEAD with the S3 backend); a bucket deleted through
   * another instance is noticed within BUCKET_TTL_MS.
   */
  async headBucket(bucket: string): Promise<BucketInfo> {
    const cached = this.buckets.get(bucket);
    if (cached && cached.until > Date.now()) return cached.info;
    const info = !isBucketName(bucket) ? null : this.cli?.has(bucket) ? await this.cli.headBucket(bucket) : await this.backend.headBucket(bucket);
    if (!info) throw new S3Error('NoSuchBucket', undefined, { fields: { BucketName: bucket } });
    if (this.buckets.size > 10_000) this.buckets.clear();
    this.buckets.set(bucket, { info, until: Date.now() + BUCKET_TTL_MS });
    return info;
  }

  checkUpload(bucket: string, key: string, userMetadata: Record<string, string>): void {
    // A CLI-layout bucket refuses these at PUT; an upload would take its
    // parts and only fail at CompleteMultipartUpload.
    if (!this.cli?.has(bucket)) return;
    checkCliKey(key);
    checkUserMetadata(userMetadata);
  }

  async bucketExistsNow(bucket: string): Promise<boolean> {
    return !!(this.cli?.has(bucket) ? await this.cli.headBucket(bucket) : await this.backend.headBucket(bucket));
  }

  /**
   * Deletes an empty bucket. Object writes hold the bucket's lock for
   * reading from their bucket check to their commit, so no PUT acknowledged
   * through this instance can land between the emptiness check and the
   * removal; with a shared backend, a writer re-checks its bucket after
   * committing (./objects.ts).
   */
  async deleteBucket(bucket: string): Promise<void> {
    await this.headBucket(bucket);
    const release = await this.bucketLocks.write(bucket);
    try {
      // Uploads in progress go with the bucket, after it: an upload created
      // meanwhile either is in that listing or finds the bucket gone
      // (./multipart.ts, create).
      if (this.cli?.has(bucket)) {
        await this.cli.deleteBucket(bucket);
        this.buckets.delete(bucket);
        await this.multipart.removeUploadsOf(bucket);
        return;
      }
      for await (const b of this.backend.list(bucket)) {
        if (keyOfMetaBlob(b.name)) throw new S3Error('BucketNotEmpty', undefined, { fields: { BucketName: bucket } });
      }
      this.buckets.delete(bucket);
      try {
        await this.backend.deleteBucket(bucket, (name) => !!keyOfMetaBlob(name));
      } catch (err) {
        if (err instanceof NotEmptyError) throw new S3Error('BucketNotEmpty', undefined, { fields: { BucketName: bucket } });
        throw err;
      }
      this.buckets.delete(bucket);
      this.removed.add(bucket);
      this.usage.forget(bucket);
      await this.multipart.removeUploadsOf(bucket);
    } finally {
      release();
    }
  }

  // ---- objects ----------------------------------------------------------

  spool(body: Readable, opts: SpoolOptions = {}): Promise<Spooled> {
    return spool(body, this.opts.tmpDir, opts);
  }

  /** The visible version of a key, or null. */
  async findObject(bucket: string, key: string): Promise<ObjectMeta | null> {
    if (this.cli?.has(bucket)) return this.cli.find(bucket, key);
    const r = await this.objects.resolve(bucket, key);
    return visible(r);
  }

  /**
   * HeadObject without waiting, when it can be answered from memory: the
   * bucket confirmed lately, and the key's sidecar read before and
   * unchanged on disk (one stat, or none within HEAD_TRUST_MS of the last
   * one while nothing was written: ./objects.ts peek). The same version
   * headObject() would give at this moment; undefined whenever headObject()
   * would have to wait for the backend or would fail.
   */
  peekObject(bucket: string, key: string): ObjectMeta | undefined {
    const b = this.buckets.get(bucket);
    if (!b || b.until <= Date.now() || this.cli?.has(bucket)) return undefined;
    try {
      checkKey(key);
      return this.objects.peek(bucket, key, HEAD_TRUST_MS)?.meta;
    } catch {
      return undefined; // a bad key or a stat that failed: headObject() says what it means
    }
  }

  async headObject(bucket: string, key: string): Promise<ObjectMeta> {
    checkKey(key);
    await this.headBucket(bucket);
    const meta = await this.findObject(bucket, key);
    if (!meta) throw new S3Error('NoSuchKey', undefined, { fields: { Key: key } });
    return meta;
  }

  /**
   * GetObject: resolves the key once and streams exactly the version it
   * found. `check` sees that version before a byte is read (conditions,
   * range) and returns the range to send. If a blob of that version is gone
   * before the first byte (replaced and collected meanwhile), the key is
   * resolved again: the client gets the newer version whole, or NoSuchKey;
   * a version whose blob stays missing is damaged (IntegrityError).
   * The body's chunks may be recycled buffers (./chunk-pool.ts): the
   * consumer passes each to ChunkPool.recycle() once written, or keeps it
   * and never does.
   */
  async getObject(
    bucket: string,
    key: string,
    check: (meta: ObjectMeta) => ByteRange | undefined,
    /** The client's abort signal, or a function making it: asked for only when a stream is opened. */
    signal?: AbortSignal | (() => AbortSignal),
    open = true,
  ): Promise<{ meta: ObjectMeta; range?: ByteRange; body?: Readable; bytes?: Buffer }> {
    for (let attempt = 1; ; attempt++) {
      const meta = await this.headObject(bucket, key);
      const range = check(meta);
      if (!open) return { meta, range };
      // A small object already read and verified is sent as a buffer: a
      // stream per 4 KiB response cost more than the bytes (bench/small.ts).
      const small = this.cli?.has(bucket) ? null : this.small.keyOf(bucket, meta);
      const bytes = small ? this.small.bytes(small, range) : null;
      if (bytes) return { meta, range, bytes };
      try {
        return { meta, range, body: await this.openObject(bucket, meta, range, typeof signal === 'function' ? signal() : signal, { recycle: true }) };
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
        // Still there after resolving the key again each time, and still
        // missing a blob: not a version replaced under the reader but a
        // damaged object (a reference removed behind the proxy, say).
        // NoSuchKey would deny a key that HEAD and listings show.
        if (attempt >= 3) throw new IntegrityError(`${bucket}/${key}: ${err.message}, still after resolving the key ${attempt} times`);
      }
    }
  }

  async putObject(input: PutInput): Promise<ObjectMeta> {
    checkKey(input.key);
    await this.headBucket(input.bucket);
    const release = await this.bucketLocks.read(input.bucket);
    const releaseKey = await this.keyLocks.write(`${input.bucket}\0${input.key}`);
    try {
      if (this.cli?.has(input.bucket)) return await this.cli.put(input);
      if (this.removed.has(input.bucket) && !(await this.backend.headBucket(input.bucket))) {
        throw new S3Error('NoSuchBucket', undefined, { fields: { BucketName: input.bucket } });
      }
      return await this.objects.put(input);
    } finally {
      releaseKey();
      release();
      this.lister.invalidate(input.bucket);
    }
  }

  /** Returns true when an object was removed. */
  async deleteObject(bucket: string, key: string): Promise<boolean> {
    checkKey(key);
    await this.headBucket(bucket);
    const release = await this.keyLocks.write(`${bucket}\0${key}`);
    try {
      return await (this.cli?.has(bucket) ? this.cli.remove(bucket, key) : this.objects.remove(bucket, key));
    } finally {
      release();
      this.lister.invalidate(bucket);
    }
  }

  /**
   * Streams an object (or an inclusive range of it), verified as it goes
   * (./read.ts). `recycle`: the consumer hands each chunk back once written
   * (ChunkPool.recycle; GetObject's response does).
   */
  async openObject(bucket: string, meta: ObjectMeta, range?: ByteRange, signal?: AbortSignal, opts: { stored?: boolean; recycle?: boolean } = {}): Promise<Readable> {
    if (this.cli?.has(bucket)) return this.cli.open(bucket, meta, range, signal);
    const key = opts.stored ? null : this.small.keyOf(bucket, meta);
    const hit = key ? this.small.get(key, range) : null;
    if (hit) return hit;
    const decoded = opts.stored ? undefined : this.decoded;
    // A read kept in memory (small.capture) holds its chunks: no recycling under it.
    const capture = key !== null && !range;
    const body = await openStored({ backend: this.backend, refs: this.refs, codec: this.codec, decoded, gzip: this.gzip }, bucket, meta, range, signal, !!opts.recycle && !capture);
    return capture ? this.small.capture(key, body) : body;
  }

  /** See ./pre-encode.ts. */
  prepareDelta(bucket: string, key: string, size: number | undefined): Promise<PreEncode | null> {
    // Left to the compactor: no encoder during the upload.
    if (this.cli?.has(bucket) || this.compactor.accepts()) return Promise.resolve(null);
    return prepareDelta({ codec: this.codec, refs: this.refs, router: this.router, opts: this.opts }, bucket, key, size);
  }

  async listObjects(input: ListInput): Promise<ListResult> {
    if (this.cli?.has(input.bucket)) {
      await this.headBucket(input.bucket);
      return this.cli.list(input);
    }
    return this.lister.list(input);
  }

  copyObject(input: CopyInput): ReturnType<typeof copyObject> {
    return copyObject(this, input);
  }

  /** Removes crash leftovers in every bucket (./gc.ts). */
  async sweep(signal?: AbortSignal): Promise<{ scanned: number; removed: number }> {
    let scanned = 0;
    let removed = 0;
    for (const b of await this.backend.listBuckets()) {
      const r = await this.gc.sweep(b.name, async (key) => visibleOrThrow(await this.objects.resolve(b.name, key)), signal);
      scanned += r.scanned;
      removed += r.removed;
      // References whose last delta was swept away go too.
      for (const space of r.spaces ?? []) await this.objects.collectReference(b.name, space);
    }
    return { scanned, removed };
  }

  /** The deltaspace of a key (exposed for stats and scrub). */
  static deltaspaceOf(key: string): string {
    return deltaspaceOf(key);
  }
}

function visible(r: Resolved): ObjectMeta | null {
  if (r.v2) {
    if (r.v2.meta) return r.v2.meta;
    // A sidecar this release cannot read is refused, never skipped (never
    // an older format 1 version shown in its place).
    if (r.v2.error) throw r.v2.error;
    return null;
  }
  return r.v1?.meta ?? null;
}

function visibleOrThrow(r: Resolved): ObjectMeta | null {
  return visible(r);
}
