// Recycled read buffers for a decode's output (./output-link.ts) and for
// reads of a decoded copy (./decoded-cache.ts).
//
// Reading xdelta3's output the usual way gives every 64 KiB read a new
// buffer: 1,600 of them for a 100 MiB object, each an ArrayBuffer outside
// V8's heap. That much external memory makes V8 collect again and again
// (`--trace-gc`: "external memory pressure", then full mark-compacts every
// ~20 MB of output on the proxy's ~20 MB heap); the marking ran on V8's
// helper threads, 80-160 ms of CPU per 100 MiB GET on the two cores that
// xdelta3 and the client share. Reading into a few recycled 256 KiB
// buffers instead (net.Socket's `onread`) makes no garbage at all.
//
// A buffer can only be reused once nobody holds its bytes, so ownership is
// explicit: a chunk handed out by take() goes back to the pool only through
// recycle(), called by whoever consumed it last, after its write finished
// (the HTTP response, the decode spool's file). A chunk nobody recycles is
// simply garbage-collected, and a view cut from a chunk (a range, a
// subarray) never recycles it: recycle() knows only the chunk objects the
// pool made, so a buffer still shared by two views can never be reused
// under one of them.

/** Size of each pooled buffer: one read of a Unix socket returns up to ~200 KiB. */
export const CHUNK_BUFFER = 256 << 10;
/** Free buffers one pool keeps; more come back only when a reader falls behind. */
const KEEP_FREE = 8;

const owner = new WeakMap<Buffer, { pool: ChunkPool; buf: Buffer }>();

export class ChunkPool {
  private readonly free: Buffer[] = [];
  private closed = false;
  /** Buffers this pool allocated (for tests and the bench). */
  made = 0;

  constructor(readonly bufferSize = CHUNK_BUFFER) {}

  /** A buffer to read into: a free one, or a new one. */
  take(): Buffer {
    const b = this.free.pop();
    if (b) return b;
    this.made++;
    return Buffer.allocUnsafeSlow(this.bufferSize);
  }

  /**
   * The first `n` bytes read into `buf`, as a chunk recycle() accepts once.
   * A read under a quarter of the buffer is copied out and its buffer kept
   * for the next read: a reader that falls behind must not hold a 256 KiB
   * buffer per few bytes (memory ahead of a reader is counted in bytes
   * read, ./decode-ahead.ts), at most 4x.
   */
  chunk(buf: Buffer, n: number): Buffer {
    if (n < this.bufferSize / 4) {
      const copy = Buffer.from(buf.subarray(0, n));
      this.give(buf);
      return copy;
    }
    const c = buf.subarray(0, n);
    owner.set(c, { pool: this, buf });
    return c;
  }

  /** A chunk holding a copy of the first `n` bytes of `src` (whose buffer may then be reused). */
  copy(src: Buffer, n: number): Buffer {
    if (n < this.bufferSize / 4) return Buffer.from(src.subarray(0, n));
    const buf = this.take();
    src.copy(buf, 0, 0, n);
    return this.chunk(buf, n);
  }

  private give(buf: Buffer): void {
    if (!this.closed && this.free.length < KEEP_FREE) this.free.push(buf);
  }

  /** No more reuse: the decode is over (buffers still out are dropped when recycled). */
  close(): void {
    this.closed = true;
    this.free.length = 0;
  }

  /**
   * Gives `chunk`'s buffer back for the next read, if it is a chunk a pool
   * made and has not had back. Call it only when nothing holds the chunk's
   * bytes any more (its write has completed). Anything else is ignored.
   */
  static recycle(chunk: Buffer): void {
    const o = owner.get(chunk);
    if (!o) return;
    owner.delete(chunk);
    o.pool.give(o.buf);
  }
}
