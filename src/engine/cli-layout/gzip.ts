import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tempPath } from '../spool.js';

// Rebuilding a gzip file from its decompressed bytes, for the CLI's deltas of
// gzip inputs (made without -D: ./vcdiff.ts). The gzip header the CLI's
// xdelta3 saw (name, mtime) is not in the delta, so only files whose header
// GNU gzip writes again from the bytes alone can be rebuilt here: `gzip -n`
// output, as `tar czf` and most build tools produce. The candidate is accepted
// only when its SHA-256 is the one the CLI recorded; otherwise the caller
// answers with an error, never with other bytes.
//
// Seam: the gzip recompression search (src/engine/gzip/, issue 13) finds
// deflate parameters for streams other compressors made; when it is on main,
// `rebuildFromRaw` should try it after these candidates.

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

/**
 * A file holding the gzip stream of `raw` whose SHA-256 is `want.sha256`, or
 * null when no candidate matches. The caller removes the file.
 */
export async function rebuildFromRaw(raw: string, want: { sha256: string; size: number }, tmpDir: string, signal?: AbortSignal): Promise<string | null> {
  for (const level of LEVELS) {
    const out = tempPath(tmpDir, 'cli-gzip');
    try {
      await execa('gzip', ['-c', '-n', `-${level}`], { stdin: { file: raw }, stdout: { file: out }, cancelSignal: signal });
      const got = await sha256Of(out);
      if (got.size === want.size && got.sha256 === want.sha256) return out;
    } catch {
      // No gzip binary, or it failed: nothing to offer.
      await fsp.rm(out, { force: true });
      return null;
    }
    await fsp.rm(out, { force: true });
  }
  return null;
}
