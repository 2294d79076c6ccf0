// Reads the leading deflate blocks of a stream (RFC 1951 §3.2) just far enough to count
// their LZ77 symbols. zlib ends a block when its symbol buffer is full, after exactly
// 2^(memLevel+6) - 1 symbols, so a non-final compressed block names memLevel outright,
// and counts that fit no memLevel prove the writer is not zlib (GNU gzip, 7-Zip, ...):
// the parameter search can then stop before deflating anything.

export interface FirstBlock {
  /** BTYPE: 0 stored, 1 fixed Huffman, 2 dynamic Huffman. */
  type: number;
  final: boolean;
  /** Literals plus length/distance pairs, end-of-block excluded (compressed blocks only). */
  symbols: number;
}

class Bits {
  private pos = 0;
  private bit = 0;
  constructor(private readonly buf: Uint8Array) {}
  align(): void {
    if (this.bit) { this.bit = 0; this.pos++; }
  }
  skip(bytes: number): void {
    if (this.pos + bytes > this.buf.length) throw new RangeError('end of data');
    this.pos += bytes;
  }
  read(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) {
      if (this.pos >= this.buf.length) throw new RangeError('end of data');
      v |= ((this.buf[this.pos] >> this.bit) & 1) << i;
      if (++this.bit === 8) { this.bit = 0; this.pos++; }
    }
    return v;
  }
}

/** Canonical Huffman decoding table (RFC 1951 §3.2.2): counts per length and symbols in code order. */
interface Huffman { counts: number[]; symbols: number[] }

function huffman(lengths: number[]): Huffman {
  const counts = new Array<number>(16).fill(0);
  for (const l of lengths) counts[l]++;
  counts[0] = 0;
  const offs = new Array<number>(16).fill(0);
  for (let l = 1; l < 16; l++) offs[l] = offs[l - 1] + counts[l - 1];
  const symbols = new Array<number>(lengths.length);
  lengths.forEach((l, s) => { if (l) symbols[offs[l]++] = s; });
  return { counts, symbols };
}

function decode(b: Bits, h: Huffman): number {
  let code = 0, first = 0, index = 0;
  for (let len = 1; len < 16; len++) {
    code |= b.read(1);
    const count = h.counts[len];
    if (code - count < first) return h.symbols[index + (code - first)];
    index += count;
    first = (first + count) << 1;
    code <<= 1;
  }
  throw new RangeError('bad Huffman code');
}

const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** One block's shape, or null when `data` ends before the block does or is not deflate. */
function readBlock(b: Bits): FirstBlock | null {
  const final = b.read(1) === 1;
  const type = b.read(2);
  if (type === 0) {
    // RFC 1951 §3.2.4: byte-aligned LEN, NLEN, then LEN bytes.
    b.align();
    const len = b.read(16);
    if ((b.read(16) ^ 0xffff) !== len) return null;
    b.skip(len);
    return { type, final, symbols: 0 };
  }
  if (type === 3) return null;
  let lit: Huffman, dist: Huffman;
  if (type === 1) {
    lit = huffman(new Array<number>(288).fill(8, 0, 144).fill(9, 144, 256).fill(7, 256, 280).fill(8, 280, 288));
    dist = huffman(new Array<number>(30).fill(5));
  } else {
    const hlit = b.read(5) + 257, hdist = b.read(5) + 1, hclen = b.read(4) + 4;
    const cl = new Array<number>(19).fill(0);
    for (let i = 0; i < hclen; i++) cl[CL_ORDER[i]] = b.read(3);
    const clh = huffman(cl);
    const lengths: number[] = [];
    while (lengths.length < hlit + hdist) {
      const s = decode(b, clh);
      if (s < 16) lengths.push(s);
      else if (s === 16) {
        if (lengths.length === 0) return null;
        const prev = lengths[lengths.length - 1];
        for (let n = 3 + b.read(2); n > 0; n--) lengths.push(prev);
      } else for (let n = s === 17 ? 3 + b.read(3) : 11 + b.read(7); n > 0; n--) lengths.push(0);
    }
    lit = huffman(lengths.slice(0, hlit));
    dist = huffman(lengths.slice(hlit, hlit + hdist));
  }
  let symbols = 0;
  for (;;) {
    const s = decode(b, lit);
    if (s === 256) return { type, final, symbols };
    symbols++;
    if (s > 256) {
      if (s > 285) return null;
      b.read(LEN_EXTRA[s - 257]);
      const d = decode(b, dist);
      if (d > 29) return null;
      b.read(DIST_EXTRA[d]);
    }
  }
}

/** The shapes of the first `max` blocks wholly inside `data` (fewer if it ends first). */
export function leadingBlocks(data: Uint8Array, max = 8): FirstBlock[] {
  const b = new Bits(data);
  const out: FirstBlock[] = [];
  try {
    while (out.length < max) {
      const block = readBlock(b);
      if (!block) break;
      out.push(block);
      if (block.final) break;
    }
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
  }
  return out;
}

/** The first block's shape, or null when it cannot be read from `data`. */
export function firstBlock(data: Uint8Array): FirstBlock | null {
  return leadingBlocks(data, 1)[0] ?? null;
}

/**
 * memLevels whose symbol buffer could have produced these blocks; an empty list means
 * no zlib-family writer did. null when the blocks say nothing (none, or all stored:
 * zlib stores a block whole when compressing it would not pay).
 */
export function possibleMemLevels(blocks: FirstBlock[] | FirstBlock | null): number[] | null {
  const list = (Array.isArray(blocks) ? blocks : blocks ? [blocks] : []).filter((x) => x.type !== 0);
  if (list.length === 0) return null;
  const out: number[] = [];
  for (let m = 1; m <= 9; m++) {
    const full = (1 << (m + 6)) - 1;
    if (list.every((x) => (x.final ? x.symbols <= full : x.symbols === full))) out.push(m);
  }
  return out;
}
