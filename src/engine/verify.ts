import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

// A pass-through that proves a download is the object that was stored.
//
// It hashes every byte of the full object, forwards only the requested range,
// and holds back the last forwarded chunk until the whole object has been seen
// and its SHA-256 matches. On a mismatch the stream errors before that chunk
// leaves, so the response falls short of its Content-Length and the client sees
// a failed transfer, never wrong bytes accepted as complete.

export class IntegrityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IntegrityError';
  }
}

export interface VerifyOptions {
  sha256: string;
  size: number;
  /** Inclusive byte range to forward; the whole object when absent. */
  start?: number;
  end?: number;
  what: string;
}

export class VerifyingStream extends Transform {
  private readonly hash = createHash('sha256');
  private seen = 0;
  private held: Buffer | null = null;
  private readonly first: number;
  private readonly last: number;

  constructor(private readonly opts: VerifyOptions) {
    super({ highWaterMark: 1 << 20 });
    this.first = opts.start ?? 0;
    this.last = opts.end ?? opts.size - 1;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const from = this.seen;
    this.seen += chunk.length;
    this.hash.update(chunk);
    if (this.seen > this.opts.size) {
      cb(new IntegrityError(`${this.opts.what}: more bytes than the recorded size ${this.opts.size}`));
      return;
    }
    const lo = Math.max(this.first - from, 0);
    const hi = Math.min(this.last + 1 - from, chunk.length);
    if (hi > lo) {
      if (this.held) this.push(this.held);
      this.held = lo === 0 && hi === chunk.length ? chunk : chunk.subarray(lo, hi);
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.seen !== this.opts.size) {
      cb(new IntegrityError(`${this.opts.what}: ${this.seen} bytes, expected ${this.opts.size}`));
      return;
    }
    const got = this.hash.digest('hex');
    if (got !== this.opts.sha256) {
      cb(new IntegrityError(`${this.opts.what}: SHA-256 ${got} does not match the stored ${this.opts.sha256}`));
      return;
    }
    if (this.held) this.push(this.held);
    this.held = null;
    cb();
  }
}
