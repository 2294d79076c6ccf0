// Buffered reading of a file through a small window, so parsing a gzip file of any
// size holds one chunk in memory.
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

const CHUNK = 64 * 1024;

export class GzipFormatError extends Error {}

export class ChunkReader {
  private buf = Buffer.alloc(0);
  private off = 0;
  /** File offset of buf[0]. */
  private base = 0;

  constructor(private readonly fh: FileHandle, readonly size: number) {}

  /** File offset of the next unread byte. */
  get position(): number {
    return this.base + this.off;
  }

  get atEnd(): boolean {
    return this.position >= this.size;
  }

  private async fill(): Promise<boolean> {
    if (this.off < this.buf.length) return true;
    const next = this.base + this.buf.length;
    if (next >= this.size) return false;
    const b = Buffer.allocUnsafe(Math.min(CHUNK, this.size - next));
    const { bytesRead } = await this.fh.read(b, 0, b.length, next);
    if (bytesRead === 0) return false;
    this.base = next;
    this.buf = b.subarray(0, bytesRead);
    this.off = 0;
    return true;
  }

  async byte(): Promise<number> {
    if (!(await this.fill())) throw new GzipFormatError('truncated gzip data');
    return this.buf[this.off++];
  }

  async bytes(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw new GzipFormatError('truncated gzip data');
      const take = Math.min(left, this.buf.length - this.off);
      parts.push(this.buf.subarray(this.off, this.off + take));
      this.off += take;
      left -= take;
    }
    return Buffer.concat(parts);
  }

  /** The unread rest of the current chunk (reading the next one if empty); empty at EOF. */
  async chunk(max: number): Promise<Buffer> {
    if (!(await this.fill())) return Buffer.alloc(0);
    const c = this.buf.subarray(this.off, Math.min(this.buf.length, this.off + max));
    this.off += c.length;
    return c;
  }

  /** Gives back the last `n` bytes handed out by chunk() (what an inflater left over). */
  unread(n: number): void {
    if (n > this.off) throw new Error('unread beyond the current chunk');
    this.off -= n;
  }
}

/** Synchronous reads of a byte range, for the tight compare loop of the parameter search. */
export class RangeReader {
  private buf = Buffer.alloc(0);
  private off = 0;

  constructor(private readonly fd: number, private pos: number, private left: number) {}

  get remaining(): number {
    return this.left + this.buf.length - this.off;
  }

  /** Up to `max` next bytes of the range; empty at its end. */
  next(max: number): Buffer {
    if (this.off >= this.buf.length) {
      if (this.left === 0) return Buffer.alloc(0);
      const b = Buffer.allocUnsafe(Math.min(CHUNK, this.left));
      const n = readSync(this.fd, b, 0, b.length, this.pos);
      if (n === 0) throw new Error('file shorter than expected');
      this.pos += n;
      this.left -= n;
      this.buf = b.subarray(0, n);
      this.off = 0;
    }
    const c = this.buf.subarray(this.off, Math.min(this.buf.length, this.off + max));
    this.off += c.length;
    return c;
  }
}
