import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { S3Error } from '../errors.js';
import { BlockHasher } from './blocks.js';

// Upload bodies are spooled to a temp file while every digest the request
// needs (SHA-256 and MD5 always, plus any x-amz-checksum-* algorithm) is
// computed in the same pass: the body is read exactly once and never held in
// memory.

export interface Digest {
  update(chunk: Buffer): void;
  /** Final value in the encoding the caller compares against. */
  digest(): string | Promise<string>;
}

export interface Spooled {
  path: string;
  size: number;
  sha256: string;
  md5: string;
  /** Extra digests by the names they were requested under. */
  extra: Record<string, string>;
  /** Packed CRC-32 of every 1 MiB block (./blocks.ts). */
  blocks: Buffer;
  /** True when a tee consumer received every byte (see SpoolOptions.tee). */
  teed?: boolean;
  dispose(): Promise<void>;
}

export function tempPath(dir: string, tag: string): string {
  return path.join(dir, `${tag}-${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`);
}

export interface SpoolOptions {
  extra?: Record<string, Digest>;
  maxSize?: number;
  signal?: AbortSignal;
  /**
   * A second consumer of the bytes (an encoder working while the upload
   * arrives), fed with backpressure. If it fails it is dropped; the upload
   * goes on.
   */
  tee?: NodeJS.WritableStream;
}

export async function spool(body: Readable, dir: string, opts: SpoolOptions = {}): Promise<Spooled> {
  const file = tempPath(dir, 'upload');
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  const blocks = new BlockHasher();
  const extra = Object.entries(opts.extra ?? {});
  const max = opts.maxSize ?? Number.MAX_SAFE_INTEGER;
  let size = 0;
  let tee = opts.tee;
  let teed = false;
  // A tee can also go away without an 'error': an encoder preempted between
  // writes (./codec-pool.ts) closes its stdin quietly, and a write to a
  // destroyed stream returns false with neither 'error' nor 'drain' to follow.
  // So 'close' drops it too, and the wait below ends on any of the three.
  const drop = () => {
    tee = undefined;
  };
  tee?.on('error', drop);
  tee?.on('close', drop);
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      size += chunk.length;
      if (size > max) {
        cb(new S3Error('EntityTooLarge', undefined, { fields: { MaxSizeAllowed: String(max) } }));
        return;
      }
      sha.update(chunk);
      md5.update(chunk);
      blocks.update(chunk);
      for (const [, d] of extra) d.update(chunk);
      if (tee && (tee as NodeJS.WritableStream & { destroyed?: boolean }).destroyed) tee = undefined;
      if (tee && !tee.write(chunk)) {
        const t = tee;
        const go = () => {
          t.off('drain', go);
          t.off('error', go);
          t.off('close', go);
          cb(null, chunk);
        };
        t.on('drain', go);
        t.on('error', go);
        t.on('close', go);
        return;
      }
      cb(null, chunk);
    },
    flush(cb) {
      teed = tee !== undefined;
      tee?.end();
      cb();
    },
  });
  try {
    await pipeline(body, hasher, createWriteStream(file, { highWaterMark: 1 << 20 }), { signal: opts.signal });
  } catch (err) {
    await fsp.rm(file, { force: true });
    throw err;
  }
  return {
    path: file,
    size,
    sha256: sha.digest('hex'),
    md5: md5.digest('hex'),
    blocks: blocks.digest(),
    extra: Object.fromEntries(await Promise.all(extra.map(async ([k, d]) => [k, await d.digest()] as const))),
    teed,
    dispose: () => fsp.rm(file, { force: true }),
  };
}
