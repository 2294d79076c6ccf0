// Decides whether a gzip file can be stored as its decompressed bytes plus a recipe:
// inflate it (capped), find each member's deflate parameters, then rebuild the whole
// file through the same code a GET uses and compare SHA-256 before saying yes.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { leadingBlocks, possibleMemLevels } from './first-block.js';
import { firstDeflateOffset, GiveUp, inflateGzipFile, type ParsedMember } from './members.js';
import { GzipFormatError } from './reader.js';
import { rebuildGzip } from './rebuild.js';
import {
  candidateParams,
  GZIP_IMPL_NAME,
  GZIP_IMPL_VERSION,
  GZIP_RECIPE_FORMAT,
  type DeflateParams,
  type GzipMemberRecipe,
  type GzipRecipe,
} from './recipe.js';
import { findParams, type SearchLimits } from './search.js';

export interface AnalyzeOptions {
  tmpDir: string;
  /** Largest decompressed size accepted, in bytes. */
  maxInflated: number;
  /** Largest decompressed/compressed size ratio accepted (decompression bombs). */
  maxRatio: number;
  /** Wall-clock budget for the whole analysis, in ms (a backstop: see maxWork). */
  budgetMs: number;
  /**
   * Bytes the parameter search may deflate in all, as a multiple of the decompressed
   * size (plus 16 MiB); default 6. Finding the parameters of a stream that reproduces
   * costs well under 1x; a stream that only nearly reproduces is dropped after this.
   */
  workFactor?: number;
  signal?: AbortSignal;
  /** Most members a file may have (each carries a recipe entry); default 64. */
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

async function sha256OfStream(s: Readable, limits?: SearchLimits): Promise<string> {
  const h = createHash('sha256');
  for await (const c of s) {
    h.update(c as Buffer);
    if (limits && (Date.now() > limits.deadline || limits.signal?.aborted)) {
      s.destroy();
      throw new GiveUp('time budget exhausted');
    }
  }
  return h.digest('hex');
}

/** Compressed bytes read to judge block sizes: several zlib blocks (each at most ~200 KiB). */
const BLOCKS_READ = 1024 * 1024;

async function memLevelsOf(gz: FileHandle, m: Pick<ParsedMember, 'deflateOffset' | 'deflateSize'>): Promise<number[] | null> {
  const b = Buffer.alloc(Math.min(m.deflateSize, BLOCKS_READ));
  const { bytesRead } = await gz.read(b, 0, b.length, m.deflateOffset);
  return possibleMemLevels(leadingBlocks(b.subarray(0, bytesRead)));
}

/**
 * Each member costs ~250 bytes of recipe in the object's sidecar; release archives have
 * one. Files of many small members (bgzip) are stored plainly.
 */
const MAX_MEMBERS = 64;

/** Compressed bytes a candidate must match before the full rebuild judges it. */
const PREFIX = 128 * 1024;

/** Parameters for every member, or why there are none. */
async function searchMembers(
  members: ParsedMember[],
  rawFile: string,
  gz: FileHandle,
  limits: SearchLimits,
  prefix: number,
): Promise<GzipMemberRecipe[] | string> {
  const raw = await open(rawFile, 'r');
  try {
    const out: GzipMemberRecipe[] = [];
    let previous: DeflateParams | undefined;
    for (const m of members) {
      const memLevels = await memLevelsOf(gz, m);
      if (memLevels?.length === 0) return `member at ${m.deflateOffset} was not written by zlib (block sizes)`;
      const candidates = candidateParams(m.xfl, previous).filter((p) => !memLevels || memLevels.includes(p.memLevel));
      const found = await findParams(candidates, raw.fd, gz.fd, m, limits, prefix);
      if (!found.params) {
        return found.timedOut ? 'time or work budget exhausted' : `no deflate parameters reproduce member at ${m.deflateOffset}`;
      }
      previous = found.params;
      out.push({
        header: m.header.toString('base64'),
        rawSize: m.rawSize,
        deflateSize: m.deflateSize,
        params: found.params,
        trailer: m.trailer.toString('hex'),
      });
    }
    return out;
  } finally {
    await raw.close();
  }
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
    // The block-size test searchMembers applies to every member, on the same
    // bytes (leadingBlocks stops at the member's final block), applied to the
    // first member before anything is inflated: GNU gzip's and pigz's output
    // (tar czf) fails it, and inflating first cost 2 s and a temp file of the
    // whole decompressed size for a 45 MB .tgz, to no end.
    const firstAt = await firstDeflateOffset(gz, size);
    if (firstAt !== null && (await memLevelsOf(gz, { deflateOffset: firstAt, deflateSize: size - firstAt }))?.length === 0) {
      return giveUp(`member at ${firstAt} was not written by zlib (block sizes)`);
    }
    const out = await open(rawFile, 'w');
    let parsed;
    try {
      parsed = await inflateGzipFile(gz, out, {
        maxInflated: opts.maxInflated,
        maxRatio: opts.maxRatio,
        maxMembers: opts.maxMembers ?? MAX_MEMBERS,
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

    const original = await sha256OfStream(createReadStream(file));
    const recipeOf = (members: GzipMemberRecipe[]): GzipRecipe => ({
      format: GZIP_RECIPE_FORMAT,
      impl: { name: GZIP_IMPL_NAME, version: GZIP_IMPL_VERSION },
      members,
      tail: parsed.tail.toString('base64'),
      size,
      sha256: original,
    });
    // The proof: what a GET would send, byte for byte.
    const limits: SearchLimits = { deadline, signal: opts.signal, work: { left: (opts.workFactor ?? 6) * parsed.rawSize + 16 * 2 ** 20 } };
    const rebuildsExactly = async (recipe: GzipRecipe) => {
      try {
        return (await sha256OfStream(rebuildGzip(createReadStream(rawFile), recipe), limits)) === original;
      } catch (err) {
        if (err instanceof GiveUp) throw err;
        return false; // the rebuild itself failed (sizes): not this recipe
      }
    };

    // First pass: candidates judged on a prefix of each member, then one full rebuild
    // decides. Only if a candidate matched a prefix but not the rest, judge on whole members.
    let found = await searchMembers(parsed.members, rawFile, gz, limits, PREFIX);
    if (typeof found === 'string') return giveUp(found);
    try {
      if (!(await rebuildsExactly(recipeOf(found)))) {
        found = await searchMembers(parsed.members, rawFile, gz, limits, Infinity);
        if (typeof found === 'string') return giveUp(found);
        if (!(await rebuildsExactly(recipeOf(found)))) return giveUp('rebuilt file differs from the original');
      }
    } catch (err) {
      if (err instanceof GiveUp) return giveUp(err.message);
      throw err;
    }
    const recipe = recipeOf(found);
    if (Date.now() > deadline || opts.signal?.aborted) return giveUp('time budget exhausted');
    if ((await stat(rawFile)).size !== parsed.rawSize) return giveUp('raw file size changed');
    keep = true;
    return { recipe, rawFile, rawSize: parsed.rawSize, rawSha256: parsed.rawSha256 };
  } finally {
    await gz.close();
    if (!keep) await rm(rawFile, { force: true });
  }
}
