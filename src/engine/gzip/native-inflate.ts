import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

// Inflating a gzip reference whose decompressed bytes are known (their size
// and SHA-256 are recorded in the gzip form that was made against them), with
// Node's zlib: native code in libuv's thread pool, several times faster than
// pako in JavaScript on the event loop (./members.ts), which matters because a
// gzip-form GET cannot send a byte before the reference is inflated.
//
// Inflating is exact by definition (RFC 1951: a deflate stream decodes to one
// byte sequence), so any correct inflater gives the same bytes; only the
// treatment of what surrounds the members may differ (Node reads members one
// after another and ignores zero padding, and refuses other trailing bytes).
// Hence the result counts only if it is exactly the recorded bytes; otherwise
// the caller inflates with ./members.ts as before.

/**
 * Inflates `file` into `out`; true when `out` then holds exactly `size` bytes
 * with SHA-256 `sha256`. False (and `out` removed) when it does not, or the
 * file is not what zlib's gunzip reads. Throws only when `signal` aborts.
 */
export async function inflateKnown(file: string, out: string, size: number, sha256: string, signal?: AbortSignal): Promise<boolean> {
  const hash = createHash('sha256');
  let n = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      // More than recorded: not these bytes (and a bound on what is written).
      if (n > size) return cb(new Error('inflates to more than the recorded size'));
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  let ok = false;
  try {
    await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), createGunzip({ chunkSize: 1 << 20 }), check, createWriteStream(out, { highWaterMark: 1 << 20 }), { signal });
    ok = n === size && hash.digest('hex') === sha256;
  } catch {
    signal?.throwIfAborted();
  } finally {
    // Kept only when it holds the recorded bytes (the caller removes it after use).
    if (!ok) await rm(out, { force: true });
  }
  return ok;
}
