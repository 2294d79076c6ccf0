// Decides whether a gzip file can be stored as its decompressed bytes plus a recipe:
// inflate it (capped), find each member's deflate parameters, then rebuild the whole
// file through the same code a GET uses and compare SHA-256 before saying yes.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { firstBlock, possibleMemLevels } from './first-block.js';
import { GiveUp, inflateGzipFile, type ParsedMember } from './members.js';
import { GzipFormatError } from './reader.js';
import { rebuildGzip } from './rebuild.js';
import {
  candidateParams,
  GZIP_IMPL_NAME,
  GZIP_IMPL_VERSION,
  GZIP_RECIPE_FORMAT,
  type DeflateParams,
  type GzipRecipe,
} from './recipe.js';
import { findParams } from './search.js';

export interface AnalyzeOptions {
  tmpDir: string;
  /** Largest decompressed size accepted, in bytes. */
  maxInflated: number;
  /** Largest decompressed/compressed size ratio accepted (decompression bombs). */
  maxRatio: number;
  /** Wall-clock budget for the whole analysis, in ms. */
  budgetMs: number;
  signal?: AbortSignal;
  /** Most members a file may have (each carries a recipe entry). */
  maxMembers?: number;
  /** Told why a file was not taken, for logs and the bench. */
  onGiveUp?: (reason: string) => void;
}

export interface AnalyzeResult {
  recipe: GzipRecipe;
  rawFile: string;
  rawSize: number;
  rawSha256: string;
}

async function sha256OfStream(s: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of s) h.update(c as Buffer);
  return h.digest('hex');
}

/** A zlib first block holds at most 32767 symbols of at most 48 bits each, plus its tables. */
const FIRST_BLOCK_MAX = 256 * 1024;

async function memLevelsOf(gz: FileHandle, m: ParsedMember): Promise<number[] | null> {
  const b = Buffer.alloc(Math.min(m.deflateSize, FIRST_BLOCK_MAX));
  const { bytesRead } = await gz.read(b, 0, b.length, m.deflateOffset);
  return possibleMemLevels(firstBlock(b.subarray(0, bytesRead)));
}

/**
 * null means "store this file plainly": not gzip, corrupt, a bomb, not reproducible by
 * the pinned deflate, or over budget. On success the caller owns (and removes) rawFile.
 */
export async function analyzeGzip(file: string, opts: AnalyzeOptions): Promise<AnalyzeResult | null> {
  const deadline = Date.now() + opts.budgetMs;
  const rawFile = join(opts.tmpDir, `gzip-raw-${randomUUID()}`);
  const giveUp = (reason: string) => {
    opts.onGiveUp?.(reason);
    return null;
  };
  let keep = false;
  const gz = await open(file, 'r');
  try {
    const size = (await gz.stat()).size;
    const out = await open(rawFile, 'w');
    let parsed;
    try {
      parsed = await inflateGzipFile(gz, out, {
        maxInflated: opts.maxInflated,
        maxRatio: opts.maxRatio,
        maxMembers: opts.maxMembers ?? 1024,
        fileSize: size,
        deadline,
        signal: opts.signal,
      });
    } catch (err) {
      if (err instanceof GiveUp || err instanceof GzipFormatError) return giveUp(err.message);
      throw err;
    } finally {
      await out.close();
    }

    const raw = await open(rawFile, 'r');
    const members = [];
    try {
      let previous: DeflateParams | undefined;
      for (const m of parsed.members) {
        const memLevels = await memLevelsOf(gz, m);
        if (memLevels?.length === 0) return giveUp(`member at ${m.deflateOffset} was not written by zlib (block sizes)`);
        const candidates = candidateParams(m.xfl, previous).filter((p) => !memLevels || memLevels.includes(p.memLevel));
        const found = await findParams(candidates, raw.fd, gz.fd, m, {
          deadline,
          signal: opts.signal,
        });
        if (!found.params) {
          return giveUp(found.timedOut ? 'time budget exhausted' : `no deflate parameters reproduce member at ${m.deflateOffset}`);
        }
        previous = found.params;
        members.push({
          header: m.header.toString('base64'),
          rawSize: m.rawSize,
          deflateSize: m.deflateSize,
          params: found.params,
          trailer: m.trailer.toString('hex'),
        });
      }
    } finally {
      await raw.close();
    }

    const original = await sha256OfStream(createReadStream(file));
    const recipe: GzipRecipe = {
      format: GZIP_RECIPE_FORMAT,
      impl: { name: GZIP_IMPL_NAME, version: GZIP_IMPL_VERSION },
      members,
      tail: parsed.tail.toString('base64'),
      size,
      sha256: original,
    };
    // The proof: what a GET would send, byte for byte.
    const rebuilt = await sha256OfStream(rebuildGzip(createReadStream(rawFile), recipe));
    if (rebuilt !== original) return giveUp('rebuilt file differs from the original');
    if (Date.now() > deadline || opts.signal?.aborted) return giveUp('time budget exhausted');
    if ((await stat(rawFile)).size !== parsed.rawSize) return giveUp('raw file size changed');
    keep = true;
    return { recipe, rawFile, rawSize: parsed.rawSize, rawSha256: parsed.rawSha256 };
  } finally {
    await gz.close();
    if (!keep) await rm(rawFile, { force: true });
  }
}
