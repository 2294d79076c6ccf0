import type { Readable } from 'node:stream';
import type { BlobInfo, BucketInfo, ByteRange } from './backend.js';

// Whole buckets in another tool's layout (the DeltaGlider CLI's): objects
// addressed by their plain key, with S3 metadata, in a backend bucket of
// their own. Unlike the Backend contract, the engine needs the metadata and
// content headers here, because that layout keeps its records in them.

export interface PlainObject {
  key: string;
  size: number;
  lastModified: Date;
  /** Backend etag, without quotes. */
  etag: string;
  contentType?: string;
  /** Representation headers stored with the object (content-encoding, cache-control, ...). */
  headers: Record<string, string>;
  /** x-amz-meta-* values, names lower-cased without the prefix. */
  metadata: Record<string, string>;
}

export interface PlainPut {
  contentType?: string;
  headers?: Record<string, string>;
  metadata: Record<string, string>;
  /** Fail with AlreadyExistsError when the key exists (If-None-Match: *). */
  ifNoneMatch?: boolean;
  signal?: AbortSignal;
}

export interface PlainStore {
  /** Every bucket the credentials see, or null when they may not list buckets. */
  listBuckets(): Promise<BucketInfo[] | null>;
  headBucket(bucket: string): Promise<boolean>;
  createBucket(bucket: string): Promise<void>;
  deleteBucket(bucket: string): Promise<void>;
  head(bucket: string, key: string): Promise<PlainObject | null>;
  /** Throws NotFoundError. */
  get(bucket: string, key: string, opts?: { range?: ByteRange; signal?: AbortSignal }): Promise<{ body: Readable; size: number }>;
  /** Stores a file with its metadata; returns the etag. */
  putFile(bucket: string, key: string, path: string, opts: PlainPut): Promise<string>;
  /** Absent keys are not an error. */
  delete(bucket: string, key: string): Promise<void>;
  /** Keys in ascending UTF-8 order after `startAfter`; `shallow`: none below a further '/'. */
  list(bucket: string, opts: { prefix: string; startAfter?: string; shallow?: boolean; signal?: AbortSignal }): AsyncIterable<BlobInfo>;
}
