// Splits a gzip file into its members (RFC 1952 §2.2: a gzip file is a series of
// members) and inflates each one to the raw file, keeping headers and trailers aside.
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Inflate } from 'pako';
import { crc32 } from 'node:zlib';
import { ChunkReader, GzipFormatError } from './reader.js';

/** Names and comments longer than this are not what release tarballs carry. */
const MAX_HEADER_STRING = 64 * 1024;
/** Bytes after the last member kept verbatim (zero padding); more and we give up. */
const MAX_TAIL = 64 * 1024;
/** Compressed bytes per inflate call: bounds what one call can expand to (deflate ≤ 1032:1). */
const INFLATE_STEP = 8 * 1024;

// RFC 1952 §2.3.1 FLG bits (FTEXT, bit 0, changes nothing here).
const FHCRC = 2, FEXTRA = 4, FNAME = 8, FCOMMENT = 16;

export interface ParsedMember {
  header: Buffer;
  xfl: number;
  deflateOffset: number;
  deflateSize: number;
  rawOffset: number;
  rawSize: number;
  trailer: Buffer;
}

export interface Parsed {
  members: ParsedMember[];
  tail: Buffer;
  rawSize: number;
  rawSha256: string;
}

export interface InflateLimits {
  maxInflated: number;
  maxRatio: number;
  maxMembers: number;
  fileSize: number;
  deadline: number;
  signal?: AbortSignal;
}

/** Raised when a limit is hit: the caller stores the file plainly. */
export class GiveUp extends Error {}

/** Reads one member header after its ID1 ID2 bytes (RFC 1952 §2.3), returning all its bytes. */
async function readHeader(r: ChunkReader): Promise<Buffer> {
  const fixed = await r.bytes(8); // CM FLG MTIME(4) XFL OS
  if (fixed[0] !== 8) throw new GzipFormatError('gzip compression method is not deflate');
  const flg = fixed[1];
  if (flg & 0xe0) throw new GzipFormatError('reserved gzip flag bits set');
  const parts = [Buffer.from([0x1f, 0x8b]), fixed];
  if (flg & FEXTRA) {
    const xlen = await r.bytes(2);
    parts.push(xlen, await r.bytes(xlen.readUInt16LE(0)));
  }
  for (const f of [FNAME, FCOMMENT]) {
    if (!(flg & f)) continue;
    const s: number[] = [];
    for (;;) {
      const b = await r.byte();
      s.push(b);
      if (b === 0) break;
      if (s.length > MAX_HEADER_STRING) throw new GiveUp('gzip header string too long');
    }
    parts.push(Buffer.from(s));
  }
  if (flg & FHCRC) parts.push(await r.bytes(2));
  return Buffer.concat(parts);
}

function check(limits: InflateLimits): void {
  if (limits.signal?.aborted) throw new GiveUp('aborted');
  if (Date.now() > limits.deadline) throw new GiveUp('time budget exhausted');
}

/**
 * Inflates one member's deflate stream into `out`, updating `hash`; returns how many
 * raw bytes it held. Caps are checked as output appears, before it is written.
 */
async function inflateMember(
  r: ChunkReader,
  out: FileHandle,
  hash: Hash,
  totalBefore: number,
  limits: InflateLimits,
): Promise<{ size: number; crc: number }> {
  const cap = Math.min(limits.maxInflated, limits.maxRatio * limits.fileSize);
  const inf = new Inflate({ raw: true, chunkSize: 64 * 1024 });
  let pending: Uint8Array[] = [];
  let size = 0;
  let crc = 0;
  inf.onData = (c: Uint8Array) => {
    size += c.length;
    if (totalBefore + size > cap) throw new GiveUp('inflated size over the cap (decompression bomb?)');
    pending.push(c);
  };
  inf.onEnd = () => {};
  for (;;) {
    check(limits);
    const c = await r.chunk(INFLATE_STEP);
    if (c.length === 0) throw new GzipFormatError('truncated deflate stream');
    inf.push(c, false);
    for (const p of pending) {
      crc = crc32(p, crc);
      hash.update(p);
      await out.write(p);
    }
    pending = [];
    if (inf.ended) {
      if (inf.err !== 1 && inf.err !== 0) throw new GzipFormatError(`invalid deflate data: ${inf.msg}`);
      // pako keeps the stream state private; avail_in is what followed the stream's end.
      r.unread((inf as unknown as { strm: { avail_in: number } }).strm.avail_in);
      return { size, crc };
    }
  }
}

/** Where the first member's deflate data starts, or null when the file does not start with a gzip header. */
export async function firstDeflateOffset(gz: FileHandle, fileSize: number): Promise<number | null> {
  const r = new ChunkReader(gz, fileSize);
  try {
    if ((await r.byte()) !== 0x1f || (await r.byte()) !== 0x8b) return null;
    await readHeader(r);
    return r.position;
  } catch (err) {
    if (err instanceof GzipFormatError || err instanceof GiveUp) return null;
    throw err;
  }
}

/** Parses and inflates the whole file; throws GzipFormatError or GiveUp. */
export async function inflateGzipFile(gz: FileHandle, out: FileHandle, limits: InflateLimits): Promise<Parsed> {
  const r = new ChunkReader(gz, limits.fileSize);
  const hash = createHash('sha256');
  const members: ParsedMember[] = [];
  let rawSize = 0;
  let tail = Buffer.alloc(0);
  let first = true;
  while (!r.atEnd) {
    const start = r.position;
    const id1 = await r.byte();
    const id2 = r.atEnd ? -1 : await r.byte();
    if (id1 !== 0x1f || id2 !== 0x8b) {
      if (first) throw new GzipFormatError('not gzip data');
      const rest = limits.fileSize - start;
      if (rest > MAX_TAIL) throw new GiveUp('too much data after the last gzip member');
      tail = Buffer.concat([Buffer.from([id1, id2].filter((b) => b >= 0)), await r.bytes(rest - (id2 < 0 ? 1 : 2))]);
      break;
    }
    first = false;
    if (members.length >= limits.maxMembers) throw new GiveUp('too many gzip members');
    const header = await readHeader(r);
    const deflateOffset = r.position;
    const { size, crc } = await inflateMember(r, out, hash, rawSize, limits);
    const deflateSize = r.position - deflateOffset;
    const trailer = await r.bytes(8);
    // RFC 1952 §2.3.1: CRC32 of the uncompressed data, then its size modulo 2^32.
    if (trailer.readUInt32LE(0) !== crc || trailer.readUInt32LE(4) !== size % 2 ** 32) {
      throw new GzipFormatError('gzip trailer does not match the data');
    }
    members.push({ header, xfl: header[8], deflateOffset, deflateSize, rawOffset: rawSize, rawSize: size, trailer });
    rawSize += size;
  }
  if (members.length === 0) throw new GzipFormatError('empty file');
  return { members, tail, rawSize, rawSha256: hash.digest('hex') };
}
