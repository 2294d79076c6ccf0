import * as fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { AlreadyExistsError, PreconditionError, S3Error } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Backend, BucketInfo, ByteRange } from '../storage/backend.js';
import { Codec } from './codec.js';
import { checkBucketName, checkKey, isBucketName, dataBlob, deltaspaceOf, keyOfMetaBlob, metaBlob, type StorageKind } from './keys.js';
import { KeyedRwLock } from './locks.js';
import { encodeMeta, parseObjectMeta, type ObjectMeta } from './meta.js';
import { ReferenceCache } from './refcache.js';
import { References, type ReferenceVersion } from './references.js';
import { Multipart } from './multipart.js';
import { FileRouter } from './router.js';
import { spool, tempPath, type SpoolOptions, type Spooled } from './spool.js';
import { prepareDelta } from './pre-encode.js';
import { openStored } from './read.js';
import { SidecarCache } from './sidecar-cache.js';
import type { ListingSnapshot } from './list.js';
import { LRUCache } from 'lru-cache';
import type { EngineOptions, PreEncode, PutInput } from './types.js';

export type { EngineOptions, ObjectAttributes, PreEncode, PutInput } from './types.js';

interface Version {
  meta: ObjectMeta;
  /** The sidecar's backend etag. */
  etag: string;
}

type Versions = Partial<Record<StorageKind, Version>>;

interface Stored {
  kind: StorageKind;
  size: number;
  dataEtag: string;
  ref?: ReferenceVersion;
}

const BUCKET_TTL_MS = 2000;

function newest(v: Versions): Version | undefined {
  if (v.delta && v.direct) return v.delta.meta.created >= v.direct.meta.created ? v.delta : v.direct;
  return v.delta ?? v.direct;
}

export class Engine {
  readonly codec: Codec;
  readonly router: FileRouter;
  private readonly cache: ReferenceCache;
  private readonly refs: References;
  readonly multipart: Multipart;
  readonly sidecars: SidecarCache;
  /** Listing snapshots for continued pages (./list.ts), at most 1M keys in all. */
  readonly listings = new LRUCache<string, ListingSnapshot>({ max: 64, maxSize: 1_000_000, sizeCalculation: (s) => Math.max(1, s.sorted.length) });
  private sweeper?: NodeJS.Timeout;
  private readonly keyLocks = new KeyedRwLock();
  private readonly spaceLocks = new KeyedRwLock();
  private readonly buckets = new Map<string, { info: BucketInfo; until: number }>();
  private readonly generations = new Map<string, number>();

  constructor(
    readonly backend: Backend,
    readonly opts: EngineOptions,
    private readonly log: Logger = silentLogger,
  ) {
    this.codec = new Codec(opts.codec);
    this.router = new FileRouter(opts.deltaExtensions);
    this.cache = new ReferenceCache(opts.cacheDir, opts.cacheBytes, backend);
    this.refs = new References(backend, this.cache, opts.toolVersion, log);
    this.multipart = new Multipart(this, log);
    this.sidecars = new SidecarCache(backend);
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.opts.tmpDir, { recursive: true });
    // Temp and cache files of a previous run are never valid now.
    await fsp.rm(this.opts.cacheDir, { recursive: true, force: true });
    await fsp.mkdir(this.opts.cacheDir, { recursive: true });
    for (const f of await fsp.readdir(this.opts.tmpDir)) await fsp.rm(`${this.opts.tmpDir}/${f}`, { force: true, recursive: true });
    await this.backend.init();
    // Abandoned multipart uploads: swept at start-up, then hourly.
    const sweep = () => this.multipart.sweep(this.opts.multipartMaxAgeMs).catch((err) => this.log.warn({ err }, 'multipart sweep failed'));
    await sweep();
    this.sweeper = setInterval(sweep, Math.min(3600_000, this.opts.multipartMaxAgeMs)).unref();
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.cache.clear();
    await this.backend.close();
  }

  // ---- buckets ----------------------------------------------------------

  listBuckets(): Promise<BucketInfo[]> {
    return this.backend.listBuckets();
  }

  async createBucket(bucket: string, opts: { location?: string } = {}): Promise<void> {
    checkBucketName(bucket);
    try {
      await this.backend.createBucket(bucket, opts);
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new S3Error('BucketAlreadyOwnedByYou', undefined, { fields: { BucketName: bucket } });
      throw err;
    }
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
    const info = isBucketName(bucket) ? await this.backend.headBucket(bucket) : null;
    if (!info) throw new S3Error('NoSuchBucket', undefined, { fields: { BucketName: bucket } });
    if (this.buckets.size > 10_000) this.buckets.clear();
    this.buckets.set(bucket, { info, until: Date.now() + BUCKET_TTL_MS });
    return info;
  }

  async deleteBucket(bucket: string): Promise<void> {
    await this.headBucket(bucket);
    for await (const b of this.backend.list(bucket)) {
      if (keyOfMetaBlob(b.name)) {
        throw new S3Error('BucketNotEmpty', undefined, { fields: { BucketName: bucket } });
      }
    }
    this.buckets.delete(bucket);
    // Uploads in progress go with the bucket: nothing could complete them.
    for (const u of await this.multipart.list(bucket)) await this.multipart.abort(bucket, u.rec.key, u.id);
    await this.backend.deleteBucket(bucket);
    this.buckets.delete(bucket);
  }

  // ---- objects ----------------------------------------------------------

  spool(body: Readable, opts: SpoolOptions = {}): Promise<Spooled> {
    return spool(body, this.opts.tmpDir, opts);
  }

  private async readVersion(bucket: string, key: string, kind: StorageKind): Promise<Version | null> {
    const blob = await this.backend.readSmall(bucket, metaBlob(key, kind));
    if (!blob) return null;
    try {
      return { meta: parseObjectMeta(blob.body), etag: blob.etag };
    } catch (err) {
      this.log.error({ bucket, key, kind, err }, 'unreadable sidecar; object treated as absent');
      return null;
    }
  }

  private async versions(bucket: string, key: string): Promise<Versions> {
    const [delta, direct] = await Promise.all([this.readVersion(bucket, key, 'delta'), this.readVersion(bucket, key, 'direct')]);
    return { delta: delta ?? undefined, direct: direct ?? undefined };
  }

  /** The visible version of a key: the newer sidecar if an overwrite left two. */
  async findObject(bucket: string, key: string): Promise<ObjectMeta | null> {
    return newest(await this.versions(bucket, key))?.meta ?? null;
  }

  async headObject(bucket: string, key: string): Promise<ObjectMeta> {
    checkKey(key);
    await this.headBucket(bucket);
    const meta = await this.findObject(bucket, key);
    if (!meta) throw new S3Error('NoSuchKey', undefined, { fields: { Key: key } });
    return meta;
  }

  /**
   * Stores an object: data first, sidecar last (the commit). The sidecar is
   * written conditionally on the version it replaces, so when several
   * instances share a backend and write one key at once, a writer whose
   * commit finds another version writes again: the last commit always
   * describes the data beside it.
   */
  async putObject(input: PutInput): Promise<ObjectMeta> {
    const { bucket, key, body } = input;
    checkKey(key);
    await this.headBucket(bucket);
    const space = deltaspaceOf(key);
    const eligible = body.size > 0 && body.size <= this.opts.maxDeltaObjectSize && this.router.isDeltaEligible(key);
    const releaseKey = await this.keyLocks.write(`${bucket}\0${key}`);
    // The deltaspace read lock spans reference use through the sidecar
    // write, so a concurrent delete cannot collect the reference in between.
    const releaseSpace = eligible ? await this.spaceLocks.read(`${bucket}\0${space}`) : undefined;
    let collect = false;
    try {
      for (let attempt = 1; ; attempt++) {
        const versions = await this.versions(bucket, key);
        input.precondition?.(newest(versions)?.meta ?? null);
        const attemptDelta = eligible ? await this.storeDelta(bucket, key, space, body, attempt === 1 ? input.pre : undefined) : null;
        let stored = attemptDelta?.stored ?? (await this.storeDirect(bucket, key, body));
        // A reference seeded by an upload that then went direct serves no one.
        collect ||= !!attemptDelta?.seeded && stored.kind === 'direct';
        let meta = this.describe(input, stored);
        try {
          await this.commit(bucket, key, meta, versions[stored.kind]);
          if (stored.ref && !(await this.refs.confirm(bucket, space, stored.ref))) {
            // Another instance is collecting the reference: keep the bytes
            // safe as a direct object instead.
            this.log.warn({ bucket, key }, 'reference collected concurrently; storing direct');
            const deltaVersion = await this.readVersion(bucket, key, 'delta');
            stored = await this.storeDirect(bucket, key, body);
            meta = this.describe(input, stored);
            await this.commit(bucket, key, meta, (await this.readVersion(bucket, key, 'direct')) ?? undefined);
            if (deltaVersion) await this.removeVersion(bucket, key, 'delta', deltaVersion);
            collect = true;
          }
        } catch (err) {
          if ((err instanceof PreconditionError || err instanceof AlreadyExistsError) && attempt < 5) continue;
          if (err instanceof PreconditionError || err instanceof AlreadyExistsError) {
            throw new S3Error('ConditionalRequestConflict', undefined, { cause: err });
          }
          throw err;
        }
        const other: StorageKind = stored.kind === 'delta' ? 'direct' : 'delta';
        const old = versions[other];
        if (old) await this.removeVersion(bucket, key, other, old);
        collect ||= other === 'delta' && !!old;
        return meta;
      }
    } finally {
      releaseSpace?.();
      releaseKey();
      if (collect) await this.collectReference(bucket, space);
    }
  }

  private describe(input: PutInput, stored: Stored): ObjectMeta {
    return {
      format: 1,
      tool: this.opts.toolVersion,
      key: input.key,
      kind: stored.kind,
      size: input.body.size,
      sha256: input.body.sha256,
      md5: input.body.md5,
      etag: input.etag ?? input.body.md5,
      created: new Date().toISOString(),
      content_type: input.contentType || 'application/octet-stream',
      headers: input.headers,
      user_metadata: input.userMetadata,
      checksums: input.checksums,
      stored_size: stored.size,
      data_etag: stored.dataEtag,
      ...(stored.ref ? { reference_sha256: stored.ref.sha256 } : {}),
      ...(input.parts ? { parts: input.parts } : {}),
      ...(input.partSizes ? { part_sizes: input.partSizes } : {}),
    };
  }

  /** Writes the sidecar: replaces exactly `prev`, or creates it. */
  private async commit(bucket: string, key: string, meta: ObjectMeta, prev: Version | undefined): Promise<void> {
    await this.backend.putBytes(bucket, metaBlob(key, meta.kind), encodeMeta(meta), prev ? { ifMatch: prev.etag } : { ifNoneMatch: true });
    this.bump(bucket);
  }

  /**
   * A counter of the sidecar writes and deletes this instance made in a
   * bucket: a listing snapshot taken at another count is stale.
   */
  generation(bucket: string): number {
    return this.generations.get(bucket) ?? 0;
  }

  private bump(bucket: string): void {
    this.generations.set(bucket, this.generation(bucket) + 1);
  }

  private async storeDirect(bucket: string, key: string, body: Spooled): Promise<Stored> {
    const dataEtag = await this.backend.putFile(bucket, dataBlob(key, 'direct'), body.path);
    return { kind: 'direct', size: body.size, dataEtag };
  }

  /** See ./pre-encode.ts. */
  prepareDelta(bucket: string, key: string, size: number | undefined): Promise<PreEncode | null> {
    return prepareDelta(this, this.refs, bucket, key, size);
  }

  /** Stores a delta when it is worth it; `stored` null means "store direct instead". */
  private async storeDelta(bucket: string, key: string, space: string, body: Spooled, pre?: PreEncode): Promise<{ stored: Stored | null; seeded: boolean }> {
    const { ref, created: seeded } = await this.refs.ensure(bucket, space, body, key);
    // Only an encoder that saw every byte of this very body can stand for it.
    const preFile = pre && body.teed && pre.refSha === ref.sha256 ? await pre.finish() : null;
    this.log.debug?.({ bucket, key, overlapped: !!preFile }, 'delta encode');
    if (preFile) return { stored: await this.keepDelta(bucket, key, body, preFile, ref), seeded };
    const handle = await this.refs.open(bucket, space, ref.sha256);
    const out = tempPath(this.opts.tmpDir, 'delta');
    try {
      await this.codec.encode(handle.path, handle.size, body.path, out);
      return { stored: await this.keepDelta(bucket, key, body, out, ref), seeded };
    } finally {
      handle.release();
      await fsp.rm(out, { force: true });
    }
  }

  /** Stores the delta file if it is worth it (max_delta_ratio), else null. */
  private async keepDelta(bucket: string, key: string, body: Spooled, file: string, ref: ReferenceVersion): Promise<Stored | null> {
    const { size } = await fsp.stat(file);
    if (size / body.size >= this.opts.maxDeltaRatio) return null;
    const dataEtag = await this.backend.putFile(bucket, dataBlob(key, 'delta'), file);
    return { kind: 'delta', size, dataEtag, ref };
  }

  /**
   * Removes one stored version: sidecar first, then data, each only if it is
   * still the version read (a concurrent writer's newer blobs stay).
   */
  private async removeVersion(bucket: string, key: string, kind: StorageKind, v: Version): Promise<void> {
    try {
      await this.backend.delete(bucket, metaBlob(key, kind), { ifMatch: v.etag });
      this.bump(bucket);
      await this.backend.delete(bucket, dataBlob(key, kind), v.meta.data_etag ? { ifMatch: v.meta.data_etag } : {});
    } catch (err) {
      if (!(err instanceof PreconditionError)) throw err;
    }
  }

  private async collectReference(bucket: string, space: string): Promise<void> {
    const release = await this.spaceLocks.write(`${bucket}\0${space}`);
    try {
      await this.refs.collectIfUnused(bucket, space);
    } catch (err) {
      // Not fatal: an unused reference only costs space, and the next delete
      // in the deltaspace tries again.
      this.log.warn({ bucket, space, err }, 'reference clean-up failed');
    } finally {
      release();
    }
  }

  /** Returns true when an object was removed. */
  async deleteObject(bucket: string, key: string): Promise<boolean> {
    checkKey(key);
    await this.headBucket(bucket);
    const release = await this.keyLocks.write(`${bucket}\0${key}`);
    let versions: Versions;
    try {
      versions = await this.versions(bucket, key);
      for (const kind of ['delta', 'direct'] as const) {
        const v = versions[kind];
        if (v) await this.removeVersion(bucket, key, kind, v);
        // Data without a sidecar is a crash leftover; with a shared backend it
        // may also be another instance's upload in flight, so it stays there.
        else if (!this.backend.shared) await this.backend.delete(bucket, dataBlob(key, kind));
      }
    } finally {
      release();
    }
    if (versions.delta) await this.collectReference(bucket, deltaspaceOf(key));
    return !!(versions.delta || versions.direct);
  }

  /**
   * Streams an object (or an inclusive range of it), verified as it goes
   * (./read.ts).
   */
  openObject(bucket: string, meta: ObjectMeta, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
    return openStored({ backend: this.backend, refs: this.refs, codec: this.codec }, bucket, meta, range, signal);
  }
}
