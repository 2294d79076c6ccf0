import { LRUCache } from 'lru-cache';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { ByteRange } from '../storage/backend.js';
import type { ObjectMeta } from './meta.js';

// Small objects, decoded and verified, kept in memory (bounded by bytes).
// A GET of a small object otherwise costs a blob open and read, and for a
// delta an xdelta3 process: far more than the bytes themselves (bench/small.ts).
// Entries are keyed by the blob the sidecar names and its etag: format 2
// blobs are immutable, so a key never comes to mean other bytes, and a
// replaced object resolves to a new sidecar naming a new blob.

/** Objects up to this size are kept. */
export const SMALL_OBJECT_MAX = 256 * 1024;
/** Memory for kept objects, in all. */
export const SMALL_CACHE_BYTES = 32 * 1024 * 1024;

export class SmallObjectCache {
  private readonly lru: LRUCache<string, Buffer>;

  constructor(
    private readonly maxObject = SMALL_OBJECT_MAX,
    bytes = SMALL_CACHE_BYTES,
  ) {
    this.lru = new LRUCache<string, Buffer>({ maxSize: Math.max(1, bytes), sizeCalculation: (b) => Math.max(1, b.length) });
  }

  /** The cache key of an object, or null when it is not cached. */
  keyOf(bucket: string, meta: ObjectMeta): string | null {
    const f = meta.stored[0];
    if (meta.size > this.maxObject || typeof f?.blob !== 'string') return null;
    return `${bucket}\0${f.blob}\0${f.etag ?? ''}\0${meta.sha256}`;
  }

  /** The object's bytes (or a range of them) from memory, or null. */
  get(key: string, range?: ByteRange): Readable | null {
    const buf = this.bytes(key, range);
    return buf ? Readable.from([buf], { objectMode: false }) : null;
  }

  /** The same as a buffer, for callers that can send one without a stream. */
  bytes(key: string, range?: ByteRange): Buffer | null {
    const buf = this.lru.get(key);
    if (!buf) return null;
    return range ? buf.subarray(range.start, range.end + 1) : buf;
  }

  /**
   * Passes a full read through, and keeps its bytes once it has ended: a
   * read ends only after the whole-object SHA-256 matched (./verify.ts), so
   * only verified bytes are kept.
   */
  capture(key: string, body: Readable): Readable {
    const chunks: Buffer[] = [];
    let size = 0;
    const tee = new Transform({
      transform: (chunk: Buffer, _enc, cb: TransformCallback) => {
        size += chunk.length;
        // A copy: the chunk may be a recycled buffer (./chunk-pool.ts) once sent.
        if (size <= this.maxObject) chunks.push(Buffer.from(chunk));
        cb(null, chunk);
      },
      flush: (cb: TransformCallback) => {
        if (size <= this.maxObject) this.lru.set(key, Buffer.concat(chunks, size));
        cb();
      },
    });
    body.on('error', (err) => tee.destroy(err));
    tee.on('close', () => body.destroy());
    return body.pipe(tee);
  }
}
