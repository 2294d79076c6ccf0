import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { AlreadyExistsError, NotFoundError, PreconditionError, S3Error, NotEmptyError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Backend, BlobInfo, BucketInfo, DeleteOptions, GetOptions, ListOptions, PutOptions, SmallBlob, SortedListOptions } from '../backend.js';

// All proxy buckets in one backend bucket: proxy bucket B is the prefix
// `<prefix>B/`, and the proxy's own records live under `<prefix>.deltaglider/`
// (a bucket name cannot start with '.', so the two never meet).

export interface S3BackendOptions {
  bucket: string;
  prefix: string;
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  /** Explicit backend credentials; the standard AWS chain when absent. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Bodies above this go up as multipart uploads (lib-storage). */
  multipartThreshold?: number;
  /** A backend request whose socket is idle this long fails (backend.s3_idle_timeout_secs). */
  idleTimeoutMs?: number;
  maxAttempts?: number;
  /**
   * Names kept apart from the others: under `<prefix>.deltaglider/blobs/B/`
   * instead of `<prefix>B/`. All of them end in `suffix`. The engine puts its
   * immutable blobs there, so that listing a bucket's sidecars (listSorted
   * with suffixes no such name can have) pages through sidecars only: S3
   * lists at most 1000 names a call and cannot filter by suffix.
   */
  apart?: { suffix: string; test(name: string): boolean };
}

const INTERNAL = '.deltaglider/';
const MIB = 1024 * 1024;

function status(err: unknown): number | undefined {
  return err instanceof S3ServiceException ? err.$metadata?.httpStatusCode : (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function isNotFound(err: unknown): boolean {
  const name = (err as { name?: string })?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || status(err) === 404;
}

/**
 * Keys of a listing with encoding-type=url: S3 form-encodes them (a space may
 * come as '+', a plus always as %2B), so '+' is read as a space first.
 */
export function decodeListedKey(k: string): string {
  return decodeURIComponent(k.replace(/\+/g, ' '));
}

/**
 * The client every S3 store of the proxy uses (the native backend and
 * CLI-layout buckets): bounded retries and timeouts, keep-alive agents, and
 * plain bodies, since S3 services without aws-chunked support (many) need them.
 */
export function makeS3Client(opts: Omit<S3BackendOptions, 'bucket' | 'prefix'>): S3Client {
  const cfg: S3ClientConfig = {
    region: opts.region,
    endpoint: opts.endpoint || undefined,
    forcePathStyle: opts.forcePathStyle,
    maxAttempts: opts.maxAttempts ?? 4,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: new NodeHttpHandler({
      connectionTimeout: 10_000,
      // A backend socket idle this long fails its request (retried up to
      // maxAttempts, then 503 ServiceUnavailable) or its response body: a
      // stalled backend never holds a client for ever. An idle timeout, not
      // `requestTimeout`: that one counts a whole upload's time (and only
      // logs a warning unless told to throw). It also runs while a slow
      // client holds a backend body back, so its default stays above
      // send_idle_timeout_secs, which cuts such a client first.
      socketTimeout: opts.idleTimeoutMs ?? 120_000,
      httpAgent: new http.Agent({ keepAlive: true, maxSockets: 64 }),
      httpsAgent: new https.Agent({ keepAlive: true, maxSockets: 64 }),
    }),
  };
  if (opts.accessKeyId && opts.secretAccessKey) cfg.credentials = { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey };
  return new S3Client(cfg);
}

export class S3Backend implements Backend {
  readonly kind = 's3' as const;
  readonly shared = true;
  private readonly client: S3Client;
  private readonly root: string;

  constructor(
    private readonly opts: S3BackendOptions,
    private readonly log: Logger,
  ) {
    this.client = makeS3Client(opts);
    this.root = opts.prefix && !opts.prefix.endsWith('/') ? `${opts.prefix}/` : opts.prefix;
  }

  /** Where a name lives: apart (see S3BackendOptions.apart) or among the bucket's other names. */
  private key(bucket: string, name: string): string {
    return this.isApart(name) ? this.apartKey(bucket, name) : this.mainKey(bucket, name);
  }

  private mainKey(bucket: string, name: string): string {
    return `${this.root}${bucket}/${name}`;
  }

  private apartKey(bucket: string, name: string): string {
    return `${this.root}${INTERNAL}blobs/${bucket}/${name}`;
  }

  private isApart(name: string): boolean {
    const a = this.opts.apart;
    return a !== undefined && name.endsWith(a.suffix) && a.test(name);
  }

  /**
   * Runs a read of `name` where it lives; a name kept apart is then also
   * looked for among the others, where builds before the split wrote it
   * (names are unique, so it is the same blob). Only a miss costs the second
   * request.
   */
  private async located<T>(bucket: string, name: string, read: (key: string) => Promise<T | null>): Promise<T | null> {
    const found = await read(this.key(bucket, name));
    if (found !== null || !this.isApart(name)) return found;
    return read(this.mainKey(bucket, name));
  }

  private bucketRecord(bucket: string): string {
    return `${this.root}${INTERNAL}buckets/${bucket}.json`;
  }

  /**
   * Backend failures as errors a client can act on: throttling and
   * unavailability pass on as 503 (clients retry), the rest is InternalError
   * with the cause logged by the HTTP layer.
   */
  private translate(err: unknown, what: string): Error {
    if (err instanceof S3Error || err instanceof NotFoundError) return err;
    const code = status(err);
    const name = (err as { name?: string })?.name ?? '';
    if (code === 503 || name === 'SlowDown' || name === 'ServiceUnavailable') {
      return new S3Error('SlowDown', 'The storage backend is busy; please retry.', { cause: err });
    }
    const sys = (err as { code?: string })?.code;
    if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE'].includes(sys ?? '') || name === 'TimeoutError') {
      return new S3Error('ServiceUnavailable', 'The storage backend is unreachable; please retry.', { cause: err });
    }
    const e = err instanceof Error ? err : new Error(String(err));
    e.message = `S3 backend ${what}: ${e.message}`;
    return e;
  }

  async init(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.opts.bucket }));
    } catch (err) {
      const where = `${this.opts.endpoint ?? 'AWS S3'} (region ${this.opts.region})`;
      const why = status(err) === 404 ? 'does not exist' : status(err) === 403 ? 'is not accessible with these credentials' : `is not reachable: ${(err as Error).message || (err as Error).name}`;
      throw new Error(`backend bucket "${this.opts.bucket}" at ${where} ${why}`);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  async listBuckets(): Promise<BucketInfo[]> {
    const out: BucketInfo[] = [];
    const prefix = `${this.root}${INTERNAL}buckets/`;
    for await (const o of this.listRaw(prefix, false)) {
      const name = o.Key.slice(prefix.length).replace(/\.json$/, '');
      out.push({ name, created: o.LastModified });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async headBucket(bucket: string): Promise<BucketInfo | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key: this.bucketRecord(bucket) }));
      const location = r.Metadata?.location;
      return { name: bucket, created: r.LastModified ?? new Date(0), ...(location ? { location } : {}) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.translate(err, 'headBucket');
    }
  }

  async createBucket(bucket: string, opts: { location?: string } = {}): Promise<void> {
    // The location constraint also travels as object metadata, so that
    // headBucket reads it without a GET.
    const location: Record<string, string> = opts.location ? { location: opts.location } : {};
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.opts.bucket, Key: this.bucketRecord(bucket), Body: JSON.stringify({ created: new Date().toISOString(), ...location }), Metadata: location, IfNoneMatch: '*' }),
      );
    } catch (err) {
      if (status(err) === 412 || status(err) === 409) throw new AlreadyExistsError(bucket);
      throw this.translate(err, 'createBucket');
    }
  }

  async deleteBucket(bucket: string, live?: (name: string) => boolean): Promise<void> {
    // The record first: a writer that checks the bucket after its commit
    // (another instance) then either sees it gone and takes its write back,
    // or committed before, and the scan below finds its object.
    const rec = await this.client.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.bucketRecord(bucket) })).then(
      async (r) => (r.Body ? await r.Body.transformToString() : ''),
      () => JSON.stringify({ created: new Date().toISOString() }),
    );
    await this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key: this.bucketRecord(bucket) }));
    const names: string[] = [];
    for (const prefix of this.areas(bucket)) {
      for await (const o of this.listRaw(prefix, false)) {
        if (live?.(o.Key!.slice(prefix.length))) {
          await this.client.send(new PutObjectCommand({ Bucket: this.opts.bucket, Key: this.bucketRecord(bucket), Body: rec }));
          throw new NotEmptyError(bucket);
        }
        names.push(o.Key!);
      }
    }
    // Leftovers (blobs of interrupted writes) go with the bucket.
    for (const Key of names) await this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key }));
  }

  /** The key prefixes a bucket's names live under: its own, and the one kept apart. */
  private areas(bucket: string): string[] {
    return this.opts.apart ? [this.mainKey(bucket, ''), this.apartKey(bucket, '')] : [this.mainKey(bucket, '')];
  }

  private conditions(opts: PutOptions): { IfNoneMatch?: string; IfMatch?: string } {
    return { ...(opts.ifNoneMatch ? { IfNoneMatch: '*' } : {}), ...(opts.ifMatch !== undefined ? { IfMatch: opts.ifMatch } : {}) };
  }

  private conditionFailed(err: unknown, opts: PutOptions, what: string): Error {
    const code = status(err);
    if (code === 412 || code === 409) return opts.ifNoneMatch ? new AlreadyExistsError(what) : new PreconditionError(what);
    // If-Match on a missing blob: S3 answers 404.
    if (opts.ifMatch !== undefined && isNotFound(err)) return new PreconditionError(what);
    return this.translate(err, `put ${what}`);
  }

  async putFile(bucket: string, name: string, file: string, opts: PutOptions = {}): Promise<string> {
    const { size } = await fsp.stat(file);
    const Key = this.key(bucket, name);
    const threshold = this.opts.multipartThreshold ?? 64 * MIB;
    const conditional = opts.ifNoneMatch || opts.ifMatch !== undefined;
    try {
      if (size > threshold && (!conditional || size > 5 * 1024 * MIB)) {
        // Large bodies: parallel parts, streamed from the file. Conditional
        // writes up to S3's 5 GiB single-PUT limit go as one PUT; above it
        // the condition travels on CompleteMultipartUpload, which S3 supports
        // (If-None-Match / If-Match, CompleteMultipartUpload API reference);
        // lib-storage passes its params on to that call.
        const up = new Upload({
          client: this.client,
          params: { Bucket: this.opts.bucket, Key, Body: createReadStream(file), ...this.conditions(opts) },
          partSize: Math.max(16 * MIB, Math.ceil(size / 9000)),
          queueSize: 4,
        });
        if (opts.signal) opts.signal.addEventListener('abort', () => void up.abort(), { once: true });
        const r = await up.done();
        return (r as { ETag?: string }).ETag ?? '';
      }
      const r = await this.client.send(
        new PutObjectCommand({ Bucket: this.opts.bucket, Key, Body: createReadStream(file), ContentLength: size, ...this.conditions(opts) }),
        { abortSignal: opts.signal },
      );
      return r.ETag ?? '';
    } catch (err) {
      throw this.conditionFailed(err, opts, name);
    }
  }

  async putBytes(bucket: string, name: string, body: Buffer, opts: PutOptions = {}): Promise<string> {
    try {
      const r = await this.client.send(
        new PutObjectCommand({ Bucket: this.opts.bucket, Key: this.key(bucket, name), Body: body, ContentLength: body.length, ContentType: 'application/json', ...this.conditions(opts) }),
        { abortSignal: opts.signal },
      );
      return r.ETag ?? '';
    } catch (err) {
      throw this.conditionFailed(err, opts, name);
    }
  }

  async getStream(bucket: string, name: string, opts: GetOptions = {}): Promise<{ body: Readable; size: number }> {
    const found = await this.located(bucket, name, async (Key) => {
      try {
        const r = await this.client.send(
          new GetObjectCommand({ Bucket: this.opts.bucket, Key, Range: opts.range ? `bytes=${opts.range.start}-${opts.range.end}` : undefined }),
          { abortSignal: opts.signal },
        );
        const total = r.ContentRange ? Number(r.ContentRange.split('/')[1]) : (r.ContentLength ?? 0);
        return { body: r.Body as Readable, size: total };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw this.translate(err, `get ${name}`);
      }
    });
    if (!found) throw new NotFoundError(name);
    return found;
  }

  async readSmall(bucket: string, name: string, signal?: AbortSignal): Promise<SmallBlob | null> {
    return this.located(bucket, name, async (Key) => {
      try {
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key }), { abortSignal: signal });
        return { body: Buffer.from(await r.Body!.transformToByteArray()), etag: r.ETag ?? '' };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw this.translate(err, `read ${name}`);
      }
    });
  }

  async head(bucket: string, name: string): Promise<BlobInfo | null> {
    return this.located(bucket, name, async (Key) => {
      try {
        const r = await this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key }));
        return { name, size: r.ContentLength ?? 0, lastModified: r.LastModified ?? new Date(0), etag: r.ETag };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw this.translate(err, `head ${name}`);
      }
    });
  }

  async delete(bucket: string, name: string, opts: DeleteOptions = {}): Promise<void> {
    await this.deleteKey(this.key(bucket, name), name, opts);
    // Written before the split, it lies among the other names.
    if (this.isApart(name)) await this.deleteKey(this.mainKey(bucket, name), name, opts);
  }

  private async deleteKey(Key: string, name: string, opts: DeleteOptions): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key, ...(opts.ifMatch !== undefined ? { IfMatch: opts.ifMatch } : {}) }));
    } catch (err) {
      if (isNotFound(err)) return;
      if (status(err) === 412 || status(err) === 409) throw new PreconditionError(name);
      // Services without conditional deletes: refuse rather than risk a newer
      // version (the caller leaves the blob for a later clean-up).
      if (opts.ifMatch !== undefined && status(err) === 501) {
        this.log.warn({ name }, 'backend has no conditional deletes; blob left in place');
        throw new PreconditionError(name);
      }
      throw this.translate(err, `delete ${name}`);
    }
  }

  async *list(bucket: string, opts: ListOptions = {}): AsyncIterable<BlobInfo> {
    for (const base of this.areas(bucket)) {
      for await (const o of this.listRaw(base + (opts.prefix ?? ''), !!opts.shallow, opts.signal)) {
        yield { name: o.Key.slice(base.length), size: o.Size, lastModified: o.LastModified, etag: o.ETag };
      }
    }
  }

  async *listSorted(bucket: string, opts: SortedListOptions): AsyncIterable<BlobInfo> {
    const area = (base: string, callEnd?: (more: boolean) => boolean) => this.sortedArea(base, opts, callEnd);
    const [main, apart] = this.areas(bucket);
    // Names kept apart all end in their suffix: a listing for other
    // suffixes only (the sidecars) never needs them.
    const a = this.opts.apart;
    const needApart = apart !== undefined && (!opts.suffixes || opts.suffixes.some((s) => s.endsWith(a!.suffix) || a!.suffix.endsWith(s)));
    if (!needApart) {
      yield* area(main, opts.callEnd);
      return;
    }
    // Two areas: their calls do not end at one place, so no callEnd.
    yield* mergeSorted(area(main), area(apart));
  }

  private async *sortedArea(base: string, opts: SortedListOptions, callEnd?: (more: boolean) => boolean): AsyncGenerator<BlobInfo> {
    const startAfter = opts.startAfter ? base + opts.startAfter : undefined;
    for await (const o of this.listRaw(base + opts.prefix, false, opts.signal, startAfter, callEnd)) {
      yield { name: o.Key.slice(base.length), size: o.Size, lastModified: o.LastModified, etag: o.ETag };
    }
  }

  private async *listRaw(prefix: string, shallow: boolean, signal?: AbortSignal, startAfter?: string, callEnd?: (more: boolean) => boolean) {
    let token: string | undefined;
    do {
      let r;
      try {
        r = await this.client.send(
          // encoding-type=url: keys may hold characters XML would not carry
          // exactly (a '\r' is read back as '\n').
          new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: prefix, Delimiter: shallow ? '/' : undefined, ContinuationToken: token, StartAfter: token ? undefined : startAfter, MaxKeys: 1000, EncodingType: 'url' }),
          { abortSignal: signal },
        );
      } catch (err) {
        throw this.translate(err, 'list');
      }
      for (const o of r.Contents ?? []) {
        if (o.Key !== undefined) yield { Key: decodeListedKey(o.Key), Size: o.Size ?? 0, LastModified: o.LastModified ?? new Date(0), ETag: o.ETag };
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
      // The consumer may stop at a call's end rather than pay for the next.
      if (callEnd?.(!!token)) return;
    } while (token);
  }
}

/** Two name-sorted streams as one, in UTF-8 byte order (S3's listing order). */
async function* mergeSorted(a: AsyncGenerator<BlobInfo>, b: AsyncGenerator<BlobInfo>): AsyncGenerator<BlobInfo> {
  let x = await a.next();
  let y = await b.next();
  try {
    while (!x.done || !y.done) {
      if (y.done || (!x.done && Buffer.compare(Buffer.from(x.value.name), Buffer.from(y.value.name)) <= 0)) {
        yield x.value as BlobInfo;
        x = await a.next();
      } else {
        yield y.value;
        y = await b.next();
      }
    }
  } finally {
    await Promise.all([a.return(undefined), b.return(undefined)]);
  }
}
