import * as fsp from 'node:fs/promises';

// How much of the reference a delta's windows reach, read from the VCDIFF
// window headers (RFC 3284, section 4) without decoding anything.
//
// Why: xdelta3 decodes with a source buffer of -B bytes. When the whole
// reference fits in it, xdelta3 first reads the whole reference into fresh
// memory: for a 100 MiB reference that is ~100 ms before the first output
// byte, and a fifth of the decode time. With a smaller buffer it reads the
// reference lazily, in 32 blocks of -B/32 bytes kept in an LRU, and the
// first byte comes after ~30 ms. But a buffer smaller than what one window
// copies from makes the LRU thrash: measured on a delta of 200-byte copies
// scattered over 100 MiB, 6-30 s instead of 0.34 s. Each window copies only
// from its source segment, so a buffer of twice the largest segment never
// evicts a block a window still needs; ./codec.ts sizes -B from that.
//
// File layout (RFC 3284 4.1, 4.2, and xdelta3's application header):
//   D6 C3 C4 00, Hdr_Indicator, [secondary id], [code table], [app header],
//   then per window: Win_Indicator, [segment size, segment position] when
//   VCD_SOURCE or VCD_TARGET is set, the length of the delta encoding, and
//   that many bytes. Integers are base-128, most significant digit first.

const VCD_DECOMPRESS = 0x01;
const VCD_CODETABLE = 0x02;
const VCD_APPHEADER = 0x04;
const VCD_SOURCE = 0x01;
const VCD_TARGET = 0x02;

class Cursor {
  private buf = Buffer.alloc(0);
  private at = 0;
  /** File offset of buf[0]. */
  private base = 0;

  constructor(
    private readonly fh: fsp.FileHandle,
    readonly size: number,
  ) {}

  get pos(): number {
    return this.base + this.at;
  }

  /** Moves past a field whose length comes next (read first: `pos` must be taken after it). */
  async skipCounted(): Promise<void> {
    const n = await this.int();
    this.seek(this.pos + n);
  }

  private seek(pos: number): void {
    if (pos >= this.base && pos <= this.base + this.buf.length) this.at = pos - this.base;
    else {
      this.buf = Buffer.alloc(0);
      this.base = pos;
      this.at = 0;
    }
  }

  async byte(): Promise<number> {
    if (this.at >= this.buf.length) {
      const base = this.pos;
      const want = Math.min(4096, this.size - base);
      if (want <= 0) throw new RangeError('past the end');
      const b = Buffer.allocUnsafe(want);
      const { bytesRead } = await this.fh.read(b, 0, want, base);
      if (bytesRead === 0) throw new RangeError('past the end');
      this.buf = b.subarray(0, bytesRead);
      this.base = base;
      this.at = 0;
    }
    return this.buf[this.at++];
  }

  async int(): Promise<number> {
    let n = 0;
    for (let i = 0; i < 8; i++) {
      const b = await this.byte();
      n = n * 128 + (b & 0x7f);
      if (!(b & 0x80)) return n;
    }
    throw new RangeError('integer too long');
  }
}

/**
 * The largest source segment of any window of the delta file, in bytes (0
 * when no window copies from the source); null when the file is not a
 * VCDIFF this scanner follows to its exact end, in which case the caller
 * must assume the delta may reach anywhere in the reference.
 */
export async function largestSourceSegment(file: string): Promise<number | null> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(file, 'r');
    const { size } = await fh.stat();
    const c = new Cursor(fh, size);
    if ((await c.byte()) !== 0xd6 || (await c.byte()) !== 0xc3 || (await c.byte()) !== 0xc4) return null;
    await c.byte(); // version
    const hdr = await c.byte();
    if (hdr & ~(VCD_DECOMPRESS | VCD_CODETABLE | VCD_APPHEADER)) return null;
    if (hdr & VCD_DECOMPRESS) await c.byte();
    if (hdr & VCD_CODETABLE) await c.skipCounted();
    if (hdr & VCD_APPHEADER) await c.skipCounted();
    let largest = 0;
    while (c.pos < size) {
      const win = await c.byte();
      if (win & (VCD_SOURCE | VCD_TARGET)) {
        const segment = await c.int();
        await c.int(); // position
        if (segment > largest) largest = segment;
      }
      await c.skipCounted();
    }
    return c.pos === size ? largest : null;
  } catch {
    return null;
  } finally {
    await fh?.close();
  }
}
