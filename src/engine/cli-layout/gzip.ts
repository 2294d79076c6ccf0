import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { analyzeGzip, type DeflateParams } from '../gzip/index.js';
import { crc32 } from 'node:zlib';
import { newRawDeflate } from '../gzip/recipe.js';
import { tempPath } from '../spool.js';

// Rebuilding a gzip file from its decompressed bytes, for the CLI's deltas of
// gzip inputs (made without -D: ./vcdiff.ts). The gzip header the CLI's
// xdelta3 saw (name, mtime) is not in the delta, so candidates are guessed
// and each is accepted only when its SHA-256 is the one the CLI recorded;
// otherwise the caller answers with an error, never with other bytes.
//
//   1. GNU gzip -n (no name, no time), as `tar czf` and most build tools write;
//   2. the deflate parameters the gzip stored form finds for the deltaspace's
//      reference (../gzip/, pako pinned), with the reference's own header, the
//      same with no time, and with no name and no time: successive versions
//      from one build tool are compressed alike.

// GNU gzip's default first, then the levels build tools pick; each try costs a compression.
const LEVELS = [6, 9, 1];

async function sha256Of(file: string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of createReadStream(file) as AsyncIterable<Buffer>) {
    h.update(c);
    size += c.length;
  }
  return { sha256: h.digest('hex'), size };
}

type Want = { sha256: string; size: number };

async function accept(out: string, want: Want): Promise<string | null> {
  const got = await sha256Of(out);
  if (got.size === want.size && got.sha256 === want.sha256) return out;
  await fsp.rm(out, { force: true });
  return null;
}

async function gnuGzip(raw: string, want: Want, tmpDir: string, signal?: AbortSignal): Promise<string | null> {
  for (const level of LEVELS) {
    const out = tempPath(tmpDir, 'cli-gzip');
    try {
      // buffer: execa 9 would also keep the whole output in memory as a string.
      await execa('gzip', ['-c', '-n', `-${level}`], { stdin: { file: raw }, stdout: { file: out }, cancelSignal: signal, buffer: { stdout: false, stderr: true } });
    } catch {
      // No gzip binary, or it failed: nothing to offer.
      await fsp.rm(out, { force: true });
      return null;
    }
    if (await accept(out, want)) return out;
  }
  return null;
}

/** One gzip member of `raw` with this header and deflate parameters. */
async function pakoMember(raw: string, header: Buffer, params: DeflateParams, out: string): Promise<void> {
  const file = createWriteStream(out);
  const write = (b: Uint8Array) => new Promise<void>((res, rej) => file.write(b, (e) => (e ? rej(e) : res())));
  const chunks: Uint8Array[] = [];
  const d = newRawDeflate(params, 1 << 16);
  d.onData = (c: Uint8Array) => void chunks.push(c);
  let crc = 0;
  let size = 0;
  try {
    await write(header);
    for await (const c of createReadStream(raw, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      crc = crc32(c, crc);
      size += c.length;
      d.push(c, false);
      for (const x of chunks.splice(0)) await write(x);
    }
    d.push(new Uint8Array(0), true);
    for (const x of chunks.splice(0)) await write(x);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE(size % 2 ** 32, 4);
    await write(trailer);
  } finally {
    await new Promise<void>((res) => file.end(() => res()));
  }
}

/** Header variants of the reference's first member: as is, no time, no name and no time. */
function headers(h: Buffer): Buffer[] {
  const noTime = Buffer.from(h);
  noTime.writeUInt32LE(0, 4);
  const out = [h, noTime];
  const FNAME = 0x08;
  if ((h[3] & FNAME) && !(h[3] & 0x14)) {
    // Only FNAME among the optional fields: drop it (the name ends at the first NUL).
    const end = h.indexOf(0, 10);
    if (end > 0) {
      const bare = Buffer.concat([noTime.subarray(0, 10), noTime.subarray(end + 1)]);
      bare[3] &= ~FNAME;
      out.push(bare);
    }
  }
  return out;
}

const recipes = new Map<string, { header: Buffer; params: DeflateParams } | null>();

async function referenceRecipe(reference: { path: string; sha256: string }, tmpDir: string, signal?: AbortSignal) {
  if (recipes.has(reference.sha256)) return recipes.get(reference.sha256)!;
  const r = await analyzeGzip(reference.path, { tmpDir, maxInflated: 8 * 1024 ** 3, maxRatio: 1000, budgetMs: 30_000, signal, maxMembers: 1 }).catch(() => null);
  if (r) await fsp.rm(r.rawFile, { force: true });
  const m = r?.recipe.members.length === 1 ? r.recipe.members[0] : null;
  const v = m ? { header: Buffer.from(m.header, 'base64'), params: m.params } : null;
  if (recipes.size > 256) recipes.clear();
  recipes.set(reference.sha256, v);
  return v;
}

/**
 * A file holding the gzip stream of `raw` whose SHA-256 is `want.sha256`, or
 * null when no candidate matches. The caller removes the file.
 */
export async function rebuildFromRaw(raw: string, want: Want, tmpDir: string, signal?: AbortSignal, reference?: { path: string; sha256: string }): Promise<string | null> {
  const gnu = await gnuGzip(raw, want, tmpDir, signal);
  if (gnu || !reference) return gnu;
  const rec = await referenceRecipe(reference, tmpDir, signal);
  if (!rec) return null;
  for (const h of headers(rec.header)) {
    const out = tempPath(tmpDir, 'cli-gzip');
    await pakoMember(raw, h, rec.params, out);
    if (await accept(out, want)) return out;
  }
  return null;
}
