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
  /** Opaque version tag for conditional writes and deletes (If-Match). */
  etag?: string;
}

export interface BucketInfo {
  name: string;
  created: Date;
  /** The LocationConstraint given at creation (GetBucketLocation), when known. */
  location?: string;
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
  /** Fail with PreconditionError unless the blob exists with this etag. */
  ifMatch?: string;
  signal?: AbortSignal;
}

export interface DeleteOptions {
  /** Delete only the version with this etag; PreconditionError otherwise. */
  ifMatch?: string;
}

export interface SmallBlob {
  body: Buffer;
  etag: string;
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

export interface SortedListOptions {
  prefix: string;
  startAfter?: string;
  /**
   * A hint: the caller needs only names ending in one of these. A backend
   * may return others too (S3 does); the filesystem skips the rest early.
   */
  suffixes?: string[];
  signal?: AbortSignal;
  /**
   * Called where the backend would make its next list call, if it makes
   * them (S3: 1000 names each); `more` says whether names remain. Returning
   * true ends the listing there: a caller with a full page spares the call.
   */
  callEnd?: (more: boolean) => boolean;
}

export interface Backend {
  readonly kind: 'filesystem' | 's3';
  /**
   * Whether several proxy instances may use this backend at once. The engine
   * then protects cross-instance races with conditional writes (the
   * filesystem backend serves one instance, whose in-process locks suffice).
   */
  readonly shared: boolean;

  /** Checks that the backend is usable; throws with a clear message otherwise. */
  init(): Promise<void>;
  close(): Promise<void>;

  listBuckets(): Promise<BucketInfo[]>;
  /** Returns the bucket or null when it does not exist. */
  headBucket(bucket: string): Promise<BucketInfo | null>;
  /** Throws AlreadyExistsError when the bucket exists. `location` is kept in the bucket record. */
  createBucket(bucket: string, opts?: { location?: string }): Promise<void>;
  /**
   * Removes a bucket and every blob left in it. The bucket disappears first
   * (no write that checks it afterwards can land in it); then, if any blob
   * satisfies `live` (an object committed meanwhile), the bucket is restored
   * as it was and NotEmptyError thrown.
   */
  deleteBucket(bucket: string, live?: (name: string) => boolean): Promise<void>;

  /**
   * Stores the file at `path` as blob `name`, atomically (never half-visible).
   * Returns the new version's etag.
   */
  putFile(bucket: string, name: string, path: string, opts?: PutOptions): Promise<string>;
  /** Stores a small in-memory body (sidecars) atomically; returns its etag. */
  putBytes(bucket: string, name: string, body: Buffer, opts?: PutOptions): Promise<string>;
  /** Streams a blob; throws NotFoundError. */
  getStream(bucket: string, name: string, opts?: GetOptions): Promise<{ body: Readable; size: number }>;
  /** Reads a small blob fully (sidecars) with its etag, or null when absent. */
  readSmall(bucket: string, name: string, signal?: AbortSignal): Promise<SmallBlob | null>;
  /** Size, mtime and etag, or null when absent. */
  head(bucket: string, name: string): Promise<BlobInfo | null>;
  /** Removes a blob; absent blobs are not an error (even with ifMatch). */
  delete(bucket: string, name: string, opts?: DeleteOptions): Promise<void>;
  /** Every blob under a prefix, in no particular order. */
  list(bucket: string, opts?: ListOptions): AsyncIterable<BlobInfo>;
  /**
   * Blobs under a prefix in ascending UTF-8 byte order of their names,
   * starting after `startAfter`: backends that list sorted (S3) offer it, so
   * that a listing page costs a page of backend listing, not a full scan.
   */
  listSorted?(bucket: string, opts: SortedListOptions): AsyncIterable<BlobInfo>;
  /**
   * A local path holding the blob's bytes, when the backend has one (the
   * filesystem backend), so the codec can read it without a copy.
   */
  localPath?(bucket: string, name: string): string;
  /**
   * The blob's current etag from local metadata alone (a stat), or null when
   * it is absent: offered only where that costs far less than reading the
   * blob (the filesystem backend), so callers can keep parsed copies of small
   * blobs and check them per use.
   */
  quickEtag?(bucket: string, name: string): string | null;
  /**
   * A number that changes when a change to any blob through this backend
   * object starts and again when it has finished; the same number means
   * nothing was changed through it in between. Offered only where nothing
   * else changes the blobs (the filesystem backend: one instance per data
   * dir), so that callers may trust what they checked a moment ago.
   */
  generation?(): number;
}
