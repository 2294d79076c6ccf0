import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { AlreadyExistsError, NotFoundError, S3Error } from '../../errors.js';
import type { BlobInfo, BucketInfo, ByteRange } from '../backend.js';
import type { PlainObject, PlainPut, PlainStore } from '../plain.js';
import { decodeListedKey, makeS3Client, type S3BackendOptions } from './s3-backend.js';

// Whole backend buckets addressed by plain keys, with their S3 metadata: the
// DeltaGlider CLI's layout (src/engine/cli-layout/). Same endpoint and
// credentials as the S3 backend.

const MIB = 1024 * 1024;
const status = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
const isNotFound = (err: unknown) => ['NoSuchKey', 'NotFound', 'NoSuchBucket'].includes((err as { name?: string })?.name ?? '') || status(err) === 404;

/** Content headers S3 stores with an object, as SDK fields. */
const HEADER_FIELDS = {
  'content-encoding': 'ContentEncoding',
  'content-disposition': 'ContentDisposition',
  'content-language': 'ContentLanguage',
  'cache-control': 'CacheControl',
  expires: 'ExpiresString',
} as const;

export class S3PlainStore implements PlainStore {
  private readonly client: S3Client;

  constructor(opts: Omit<S3BackendOptions, 'bucket' | 'prefix'>) {
    this.client = makeS3Client(opts);
  }

  close(): void {
    this.client.destroy();
  }

  /** Throttling and outages pass on as retryable 503s; the rest keeps its cause. */
  private translate(err: unknown, what: string): Error {
    if (err instanceof S3Error || err instanceof NotFoundError) return err;
    const name = (err as { name?: string })?.name ?? '';
    if (status(err) === 503 || name === 'SlowDown') return new S3Error('SlowDown', 'The storage backend is busy; please retry.', { cause: err });
    const sys = (err as { code?: string })?.code ?? '';
    if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE'].includes(sys) || name === 'TimeoutError') {
      return new S3Error('ServiceUnavailable', 'The storage backend is unreachable; please retry.', { cause: err });
    }
    const e = err instanceof Error ? err : new Error(String(err));
    e.message = `S3 (CLI layout) ${what}: ${e.message}`;
    return e;
  }

  async listBuckets(): Promise<BucketInfo[] | null> {
    try {
      const r = await this.client.send(new ListBucketsCommand({}));
      return (r.Buckets ?? []).map((b) => ({ name: b.Name ?? '', created: b.CreationDate ?? new Date(0) }));
    } catch (err) {
      if (status(err) === 403) return null;
      throw this.translate(err, 'listBuckets');
    }
  }

  async headBucket(bucket: string): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw this.translate(err, `headBucket ${bucket}`);
    }
  }

  async createBucket(bucket: string): Promise<void> {
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (err) {
      if (status(err) === 409) throw new AlreadyExistsError(bucket);
      throw this.translate(err, `createBucket ${bucket}`);
    }
  }

  async deleteBucket(bucket: string): Promise<void> {
    try {
      await this.client.send(new DeleteBucketCommand({ Bucket: bucket }));
    } catch (err) {
      throw this.translate(err, `deleteBucket ${bucket}`);
    }
  }

  async head(bucket: string, key: string): Promise<PlainObject | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      const headers: Record<string, string> = {};
      for (const [h, f] of Object.entries(HEADER_FIELDS)) {
        const v = (r as unknown as Record<string, unknown>)[f];
        if (typeof v === 'string' && v) headers[h] = v;
      }
      return {
        key,
        size: r.ContentLength ?? 0,
        lastModified: r.LastModified ?? new Date(0),
        etag: (r.ETag ?? '').replace(/^"|"$/g, ''),
        contentType: r.ContentType,
        headers,
        metadata: Object.fromEntries(Object.entries(r.Metadata ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
      };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.translate(err, `head ${key}`);
    }
  }

  async get(bucket: string, key: string, opts: { range?: ByteRange; signal?: AbortSignal } = {}): Promise<{ body: Readable; size: number }> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, Range: opts.range ? `bytes=${opts.range.start}-${opts.range.end}` : undefined }),
        { abortSignal: opts.signal },
      );
      const total = r.ContentRange ? Number(r.ContentRange.split('/')[1]) : (r.ContentLength ?? 0);
      return { body: r.Body as Readable, size: total };
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(key);
      throw this.translate(err, `get ${key}`);
    }
  }

  async putFile(bucket: string, key: string, file: string, opts: PlainPut): Promise<string> {
    const { size } = await fsp.stat(file);
    const params = {
      Bucket: bucket,
      Key: key,
      ContentType: opts.contentType || 'application/octet-stream',
      Metadata: opts.metadata,
      ...Object.fromEntries(Object.entries(opts.headers ?? {}).flatMap(([h, v]) => (h in HEADER_FIELDS ? [[HEADER_FIELDS[h as keyof typeof HEADER_FIELDS], v]] : []))),
    };
    try {
      // As in ../s3/s3-backend.ts: a create-only write goes as one PUT up to
      // S3's 5 GiB single-PUT limit; above it the condition travels on
      // CompleteMultipartUpload (If-None-Match, CompleteMultipartUpload API
      // reference), which lib-storage passes its params on to.
      if (size > 64 * MIB && (!opts.ifNoneMatch || size > 5 * 1024 * MIB)) {
        const cond = opts.ifNoneMatch ? { IfNoneMatch: '*' } : {};
        const up = new Upload({ client: this.client, params: { ...params, ...cond, Body: createReadStream(file) }, partSize: Math.max(16 * MIB, Math.ceil(size / 9000)), queueSize: 4 });
        if (opts.signal) opts.signal.addEventListener('abort', () => void up.abort(), { once: true });
        const r = await up.done();
        return ((r as { ETag?: string }).ETag ?? '').replace(/^"|"$/g, '');
      }
      const r = await this.client.send(
        new PutObjectCommand({ ...params, Body: createReadStream(file), ContentLength: size, ...(opts.ifNoneMatch ? { IfNoneMatch: '*' } : {}) }),
        { abortSignal: opts.signal },
      );
      return (r.ETag ?? '').replace(/^"|"$/g, '');
    } catch (err) {
      if (opts.ifNoneMatch && (status(err) === 412 || status(err) === 409)) throw new AlreadyExistsError(key);
      throw this.translate(err, `put ${key}`);
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw this.translate(err, `delete ${key}`);
    }
  }

  async *list(bucket: string, opts: { prefix: string; startAfter?: string; shallow?: boolean; signal?: AbortSignal }): AsyncIterable<BlobInfo> {
    let token: string | undefined;
    do {
      let r;
      try {
        r = await this.client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: opts.prefix || undefined,
            Delimiter: opts.shallow ? '/' : undefined,
            ContinuationToken: token,
            StartAfter: token ? undefined : opts.startAfter,
            MaxKeys: 1000,
            EncodingType: 'url',
          }),
          { abortSignal: opts.signal },
        );
      } catch (err) {
        if (isNotFound(err)) throw new NotFoundError(bucket);
        throw this.translate(err, 'list');
      }
      for (const o of r.Contents ?? []) {
        if (o.Key !== undefined) yield { name: decodeListedKey(o.Key), size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0), etag: o.ETag?.replace(/^"|"$/g, '') };
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }
}
