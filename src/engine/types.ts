import type { Readable } from 'node:stream';
import type { BucketInfo, ByteRange } from '../storage/backend.js';
import type { CodecOptions } from './codec.js';
import type { CompactionOptions } from './compaction.js';
import type { ObjectMeta } from './meta.js';
import type { SpoolOptions, Spooled } from './spool.js';
import type { CliLayoutOptions } from './cli-layout/layout.js';

// The engine's typed inputs and the narrow interfaces its helpers depend on
// (so that multipart, copy and listing never import the Engine class).

import type { GzipOptions } from './gzip-form.js';

export interface EngineOptions {
  tmpDir: string;
  cacheDir: string;
  cacheBytes: number;
  maxDeltaRatio: number;
  deltaExtensions: string[];
  codec: CodecOptions;
  toolVersion: string;
  /** Delta-eligible objects larger than this are stored direct. */
  maxDeltaObjectSize: number;
  /** Multipart uploads idle longer than this are removed. */
  multipartMaxAgeMs: number;
  /** Sidecar format written: 2, or 1 during a rolling upgrade from the first release. */
  writeFormat?: 1 | 2;
  /** A replaced blob is removed this long after the commit that replaced it. */
  blobGraceMs?: number;
  /** An unnamed blob older than this is a crash leftover (sweep). */
  orphanAgeMs?: number;
  /** How often the background sweep runs (0: never, not even at start-up). */
  sweepIntervalMs?: number;
  /** Disk budget of decoded delta objects kept for ranged reads (./decoded-cache.ts). */
  decodedCacheBytes?: number;
  /** The gzip stored form (./gzip-form.ts); defaults in GZIP_DEFAULTS. */
  gzip?: Partial<GzipOptions>;
  /** Inline or background delta encoding (./compaction.ts); inline when absent. */
  compaction?: CompactionOptions;
  /** Proxy buckets kept in the DeltaGlider CLI's layout (config backend.cli_buckets). */
  cliLayout?: CliLayoutOptions;
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
  /** Multipart uploads: the size of each part, for GET ?partNumber. */
  partSizes?: number[];
  /** Runs under the key's lock with the current object (or null): throw to refuse. */
  precondition?: (current: ObjectMeta | null) => void;
  /** A delta encoded while the body arrived (prepareDelta), used if still valid. */
  pre?: PreEncode;
}

/**
 * An xdelta3 encoder fed during the upload, so that the encode overlaps the
 * transfer instead of following it. Made only when the deltaspace already
 * has a reference; `putObject` checks that it is still the current one.
 */
export interface PreEncode {
  sink: NodeJS.WritableStream;
  refSha: string;
  /** Waits for the encoder; the delta file, or null if it failed or was stopped. */
  finish(): Promise<string | null>;
  /**
   * The size its delta had reached if it was stopped at max_delta_ratio of
   * the declared size (Codec.encodeStream), else null; needs no wait.
   */
  stopped(): number | null;
  /** Stops the encoder and removes its file (always call, in a finally). */
  cancel(): Promise<void>;
}

/** What multipart uploads and copies need of the engine. */
export interface ObjectStore {
  readonly tmpDir: string;
  headBucket(bucket: string): Promise<BucketInfo>;
  /** Refuses a key or metadata that the bucket's layout could never store (before a multipart upload begins). */
  checkUpload(bucket: string, key: string, userMetadata: Record<string, string>): void;
  /** Whether the bucket exists now, asked of the backend (headBucket may answer from a cache). */
  bucketExistsNow(bucket: string): Promise<boolean>;
  headObject(bucket: string, key: string): Promise<ObjectMeta>;
  putObject(input: PutInput): Promise<ObjectMeta>;
  /** `stored`: read the stored blobs, past every cache (scrub checks what is stored). */
  openObject(bucket: string, meta: ObjectMeta, range?: ByteRange, signal?: AbortSignal, opts?: { stored?: boolean }): Promise<Readable>;
  spool(body: Readable, opts?: SpoolOptions): Promise<Spooled>;
}
