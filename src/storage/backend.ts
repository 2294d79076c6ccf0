import type { Readable } from 'node:stream';

// The Backend contract. A backend stores named blobs inside buckets and lists
// them; it knows nothing about deltas, references or S3 semantics beyond that.
// Blob names are '/'-separated strings of up to ~1100 bytes (a 1024-byte user
// key plus the engine's suffixes); a backend must store any such name and list
// it back exactly.

export interface BlobInfo {
  name: string;
  size: number;
  lastModified: Date;
}

export interface BucketInfo {
  name: string;
  created: Date;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

export interface PutOptions {
  /** Fail with AlreadyExistsError when the blob exists (If-None-Match: *). */
  ifNoneMatch?: boolean;
  signal?: AbortSignal;
}

export interface GetOptions {
  range?: ByteRange;
  signal?: AbortSignal;
}

export interface ListOptions {
  /** Only names starting with this string. */
  prefix?: string;
  /**
   * Only names directly below `prefix` (no further '/'), for walking one
   * deltaspace. Defaults to false (recursive).
   */
  shallow?: boolean;
  signal?: AbortSignal;
}

export interface Backend {
  readonly kind: 'filesystem' | 's3';

  /** Checks that the backend is usable; throws with a clear message otherwise. */
  init(): Promise<void>;
  close(): Promise<void>;

  listBuckets(): Promise<BucketInfo[]>;
  /** Returns the bucket or null when it does not exist. */
  headBucket(bucket: string): Promise<BucketInfo | null>;
  /** Throws AlreadyExistsError when the bucket exists. */
  createBucket(bucket: string): Promise<void>;
  /** Removes an empty bucket (internal leftovers are the backend's to remove). */
  deleteBucket(bucket: string): Promise<void>;

  /** Stores the file at `path` as blob `name`, atomically (never half-visible). */
  putFile(bucket: string, name: string, path: string, opts?: PutOptions): Promise<void>;
  /** Stores a small in-memory body (sidecars) atomically. */
  putBytes(bucket: string, name: string, body: Buffer, opts?: PutOptions): Promise<void>;
  /** Streams a blob; throws NotFoundError. */
  getStream(bucket: string, name: string, opts?: GetOptions): Promise<{ body: Readable; size: number }>;
  /** Reads a small blob fully (sidecars); throws NotFoundError. */
  getBytes(bucket: string, name: string, signal?: AbortSignal): Promise<Buffer>;
  /** Size and mtime, or null when absent. */
  head(bucket: string, name: string): Promise<BlobInfo | null>;
  /** Removes a blob; absent blobs are not an error. */
  delete(bucket: string, name: string): Promise<void>;
  /** Every blob under a prefix, in no particular order. */
  list(bucket: string, opts?: ListOptions): AsyncIterable<BlobInfo>;
  /**
   * A local path holding the blob's bytes, when the backend has one (the
   * filesystem backend), so the codec can read it without a copy.
   */
  localPath?(bucket: string, name: string): string;
}
