import * as fsp from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { AlreadyExistsError, NotFoundError, S3Error } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Backend, BucketInfo, ByteRange } from '../storage/backend.js';
import { Codec, type CodecOptions } from './codec.js';
import { checkBucketName, checkKey, dataBlob, deltaspaceOf, metaBlob, referenceBlob, type StorageKind } from './keys.js';
import { KeyedRwLock } from './locks.js';
import { encodeMeta, parseObjectMeta, type ObjectMeta } from './meta.js';
import { ReferenceCache } from './refcache.js';
import { References } from './references.js';
import { FileRouter } from './router.js';
import { spool, tempPath, type SpoolOptions, type Spooled } from './spool.js';
import { VerifyingStream } from './verify.js';

export interface EngineOptions {
  tmpDir: string;
  cacheDir: string;
  cacheBytes: number;
  maxDeltaRatio: number;
  deltaExtensions: string[];
  codec: CodecOptions;
  toolVersion: string;
}

/** What a caller stores along with the bytes. */
export interface ObjectAttributes {
  contentType?: string;
  headers: Record<string, string>;
  userMetadata: Record<string, string>;
  checksums: Record<string, string>;
}

export interface PutInput extends ObjectAttributes {
  bucket: string;
  key: string;
  body: Spooled;
  /** ETag override (multipart form); MD5 of the body otherwise. */
  etag?: string;
  parts?: number;
  /** Runs under the key's lock with the current object (or null): throw to refuse. */
  precondition?: (current: ObjectMeta | null) => void;
}

export class Engine {
  readonly codec: Codec;
  readonly router: FileRouter;
  private readonly cache: ReferenceCache;
  private readonly refs: References;
  private readonly keyLocks = new KeyedRwLock();
  private readonly spaceLocks = new KeyedRwLock();

  constructor(
    readonly backend: Backend,
    readonly opts: EngineOptions,
    private readonly log: Logger = silentLogger,
  ) {
    this.codec = new Codec(opts.codec);
    this.router = new FileRouter(opts.deltaExtensions);
    this.cache = new ReferenceCache(opts.cacheDir, opts.cacheBytes, backend);
    this.refs = new References(backend, this.cache, opts.toolVersion, log);
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.opts.tmpDir, { recursive: true });
    // Temp and cache files of a previous run are never valid now.
    await fsp.rm(this.opts.cacheDir, { recursive: true, force: true });
    await fsp.mkdir(this.opts.cacheDir, { recursive: true });
    for (const f of await fsp.readdir(this.opts.tmpDir)) await fsp.rm(`${this.opts.tmpDir}/${f}`, { force: true, recursive: true });
    await this.backend.init();
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.backend.close();
  }

  // ---- buckets ----------------------------------------------------------

  listBuckets(): Promise<BucketInfo[]> {
    return this.backend.listBuckets();
  }

  async createBucket(bucket: string): Promise<void> {
    checkBucketName(bucket);
    try {
      await this.backend.createBucket(bucket);
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new S3Error('BucketAlreadyOwnedByYou', undefined, { fields: { BucketName: bucket } });
      throw err;
    }
  }

  async headBucket(bucket: string): Promise<BucketInfo> {
    const info = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) ? await this.backend.headBucket(bucket) : null;
    if (!info) throw new S3Error('NoSuchBucket', undefined, { fields: { BucketName: bucket } });
    return info;
  }

  async deleteBucket(bucket: string): Promise<void> {
    await this.headBucket(bucket);
    for await (const b of this.backend.list(bucket)) {
      if (b.name.endsWith('.meta') && !b.name.endsWith('reference.bin.meta')) {
        throw new S3Error('BucketNotEmpty', undefined, { fields: { BucketName: bucket } });
      }
    }
    await this.backend.deleteBucket(bucket);
  }

  // ---- objects ----------------------------------------------------------

  spool(body: Readable, opts: SpoolOptions = {}): Promise<Spooled> {
    return spool(body, this.opts.tmpDir, opts);
  }

  private async readMeta(bucket: string, key: string, kind: StorageKind): Promise<ObjectMeta | null> {
    let buf: Buffer;
    try {
      buf = await this.backend.getBytes(bucket, metaBlob(key, kind));
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
    try {
      return parseObjectMeta(buf);
    } catch (err) {
      this.log.error({ bucket, key, kind, err }, 'unreadable sidecar; object treated as absent');
      return null;
    }
  }

  /** The visible version of a key: the newer sidecar if an overwrite left two. */
  async findObject(bucket: string, key: string): Promise<ObjectMeta | null> {
    const [delta, direct] = await Promise.all([this.readMeta(bucket, key, 'delta'), this.readMeta(bucket, key, 'direct')]);
    if (delta && direct) return delta.created >= direct.created ? delta : direct;
    return delta ?? direct;
  }

  async headObject(bucket: string, key: string): Promise<ObjectMeta> {
    checkKey(key);
    await this.headBucket(bucket);
    const meta = await this.findObject(bucket, key);
    if (!meta) throw new S3Error('NoSuchKey', undefined, { fields: { Key: key } });
    return meta;
  }

  async putObject(input: PutInput): Promise<ObjectMeta> {
    const { bucket, key, body } = input;
    checkKey(key);
    await this.headBucket(bucket);
    const space = deltaspaceOf(key);
    const eligible = body.size > 0 && this.router.isDeltaEligible(key);
    const releaseKey = await this.keyLocks.write(`${bucket}\0${key}`);
    // The deltaspace read lock spans reference use through the sidecar
    // write, so a concurrent delete cannot collect the reference in between.
    const releaseSpace = eligible ? await this.spaceLocks.read(`${bucket}\0${space}`) : undefined;
    let collect = false;
    try {
      const current = await this.findObject(bucket, key);
      input.precondition?.(current);
      const stored = (eligible ? await this.storeDelta(bucket, key, space, body) : null) ?? (await this.storeDirect(bucket, key, body));
      const meta: ObjectMeta = {
        format: 1,
        tool: this.opts.toolVersion,
        key,
        kind: stored.kind,
        size: body.size,
        sha256: body.sha256,
        md5: body.md5,
        etag: input.etag ?? body.md5,
        created: new Date().toISOString(),
        content_type: input.contentType || 'application/octet-stream',
        headers: input.headers,
        user_metadata: input.userMetadata,
        checksums: input.checksums,
        stored_size: stored.size,
        ...(stored.refSha ? { reference_sha256: stored.refSha } : {}),
        ...(input.parts ? { parts: input.parts } : {}),
      };
      // Commit point: the object is the new one once its sidecar is in place.
      await this.backend.putBytes(bucket, metaBlob(key, stored.kind), encodeMeta(meta));
      const other: StorageKind = stored.kind === 'delta' ? 'direct' : 'delta';
      await this.removeBlobs(bucket, key, other);
      collect = other === 'delta';
      return meta;
    } finally {
      releaseSpace?.();
      releaseKey();
      if (collect) await this.collectReference(bucket, space);
    }
  }

  private async storeDirect(bucket: string, key: string, body: Spooled): Promise<{ kind: StorageKind; size: number; refSha?: string }> {
    await this.backend.putFile(bucket, dataBlob(key, 'direct'), body.path);
    return { kind: 'direct', size: body.size };
  }

  /** Stores a delta when it is worth it; null means "store direct instead". */
  private async storeDelta(bucket: string, key: string, space: string, body: Spooled) {
    const ref = await this.refs.ensure(bucket, space, body, key);
    const handle = await this.refs.open(bucket, space, ref);
    const out = tempPath(this.opts.tmpDir, 'delta');
    try {
      await this.codec.encode(handle.path, handle.size, body.path, out);
      const { size } = await fsp.stat(out);
      if (size / body.size >= this.opts.maxDeltaRatio) return null;
      await this.backend.putFile(bucket, dataBlob(key, 'delta'), out);
      return { kind: 'delta' as const, size, refSha: ref.sha256 };
    } finally {
      handle.release();
      await fsp.rm(out, { force: true });
    }
  }

  /** Sidecar first, then data: no sidecar ever points at missing data. */
  private async removeBlobs(bucket: string, key: string, kind: StorageKind): Promise<void> {
    await this.backend.delete(bucket, metaBlob(key, kind));
    await this.backend.delete(bucket, dataBlob(key, kind));
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
    let existed = false;
    let hadDelta = false;
    try {
      const [delta, direct] = await Promise.all([this.readMeta(bucket, key, 'delta'), this.readMeta(bucket, key, 'direct')]);
      existed = !!(delta || direct);
      hadDelta = !!delta;
      await this.removeBlobs(bucket, key, 'delta');
      await this.removeBlobs(bucket, key, 'direct');
    } finally {
      release();
    }
    if (hadDelta) await this.collectReference(bucket, deltaspaceOf(key));
    return existed;
  }

  /**
   * Streams an object (or an inclusive range of it). Every full read is
   * verified against the stored SHA-256 before its last chunk is released;
   * delta reads are verified even for ranges, since decoding yields the
   * whole object anyway.
   */
  async openObject(bucket: string, meta: ObjectMeta, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
    const what = `${bucket}/${meta.key}`;
    const verify = (start?: number, end?: number) => new VerifyingStream({ sha256: meta.sha256, size: meta.size, start, end, what });
    if (meta.kind === 'direct') {
      if (range && !(range.start === 0 && range.end === meta.size - 1)) {
        const { body, size } = await this.backend.getStream(bucket, dataBlob(meta.key, 'direct'), { range, signal });
        if (size !== meta.stored_size) {
          body.destroy();
          throw new Error(`${what}: stored size ${size}, sidecar says ${meta.stored_size}`);
        }
        return body;
      }
      const { body } = await this.backend.getStream(bucket, dataBlob(meta.key, 'direct'), { signal });
      return pipeInto(body, verify());
    }
    const space = deltaspaceOf(meta.key);
    const handle = await this.refs.openBySha(bucket, space, meta.reference_sha256!, signal);
    try {
      const deltaName = dataBlob(meta.key, 'delta');
      const local = this.backend.localPath?.(bucket, deltaName);
      let delta: string | Readable;
      if (local) {
        await fsp.access(local);
        delta = local;
      } else {
        delta = (await this.backend.getStream(bucket, deltaName, { signal })).body;
      }
      const decoded = this.codec.decode(handle.path, handle.size, delta, signal);
      const out = pipeInto(decoded, verify(range?.start, range?.end));
      out.once('close', () => handle.release());
      return out;
    } catch (err) {
      handle.release();
      throw err;
    }
  }
}

/** Pipes `src` into `dst`, carrying errors forward, and returns `dst`. */
function pipeInto<T extends PassThrough | VerifyingStream>(src: Readable, dst: T): T {
  src.on('error', (err) => dst.destroy(err));
  dst.on('close', () => src.destroy());
  src.pipe(dst);
  return dst;
}
