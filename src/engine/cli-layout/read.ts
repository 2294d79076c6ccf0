import { createReadStream, createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { S3Error } from '../../errors.js';
import type { ByteRange } from '../../storage/backend.js';
import type { PlainStore } from '../../storage/plain.js';
import type { Codec } from '../codec.js';
import type { ObjectMeta } from '../meta.js';
import type { ReferenceCache } from '../refcache.js';
import { tempPath } from '../spool.js';
import { IntegrityError, VerifyingStream } from '../verify.js';
import { rebuildFromRaw } from './gzip.js';
import { parseXdeltaHeader, type XdeltaHeader } from './vcdiff.js';

// Reading objects of the CLI layout. Every byte sent is checked against the
// CLI's whole-object SHA-256 (dg-file-sha256); the layout records no block
// digests, so a range is cut out of the verified whole (as format 1 does).
// Objects the CLI did not write (no dg-file-sha256) are passed through with
// their size checked: S3 itself holds nothing more to check them against.

export interface CliReadDeps {
  store: PlainStore;
  cache: ReferenceCache;
  codec: Codec;
  tmpDir: string;
}

function pipeInto<T extends Transform>(src: Readable, dst: T): T {
  src.on('error', (err) => dst.destroy(err));
  dst.on('close', () => src.destroy());
  src.pipe(dst);
  return dst;
}

/** Fails the stream unless exactly `size` bytes pass. */
class SizeCheck extends Transform {
  private seen = 0;
  constructor(private readonly size: number, private readonly what: string) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    cb(this.seen > this.size ? new IntegrityError(`${this.what}: more bytes than expected`) : null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    cb(this.seen === this.size ? null : new IntegrityError(`${this.what}: ${this.seen} bytes, expected ${this.size}`));
  }
}

export async function openCli(deps: CliReadDeps, bucket: string, meta: ObjectMeta, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
  const form = meta.stored[0] as { kind: string; blob: string; size: number; reference?: { blob: string; sha256: string } };
  const what = `${bucket}/${meta.key}`;
  const verify = () => new VerifyingStream({ sha256: meta.sha256, size: meta.size, start: range?.start, end: range?.end, what });
  if (form.kind === 'direct') {
    if (!meta.sha256) {
      // Not written by DeltaGlider: S3's own bytes, ranged by S3.
      const { body } = await deps.store.get(bucket, form.blob, { range, signal });
      return pipeInto(body, new SizeCheck(range ? range.end - range.start + 1 : meta.size, what));
    }
    const { body, size } = await deps.store.get(bucket, form.blob, { signal });
    if (size !== meta.size) {
      body.destroy();
      throw new IntegrityError(`${what}: stored object has ${size} bytes, dg-file-size says ${meta.size}`);
    }
    return pipeInto(body, verify());
  }
  const ref = form.reference!;
  const head = await readHead(deps, bucket, form.blob, signal);
  const hdr = parseXdeltaHeader(head);
  if (!hdr) throw new IntegrityError(`${what}: ${form.blob} is not an xdelta3 delta`);
  const handle = await deps.cache.acquire(bucket, ref.blob, ref.sha256, signal);
  try {
    if (!hdr.targetComp && !hdr.sourceComp) {
      const { body } = await deps.store.get(bucket, form.blob, { signal });
      const out = deps.codec.decode(handle.path, handle.size, body, signal);
      out.once('close', () => handle.release());
      return pipeInto(out, verify());
    }
    const file = await decodeCompressed(deps, bucket, meta, form.blob, { path: handle.path, size: handle.size, sha256: ref.sha256 }, hdr, signal);
    handle.release();
    const out = createReadStream(file);
    out.once('close', () => void fsp.rm(file, { force: true }));
    return pipeInto(out, verify());
  } catch (err) {
    handle.release();
    throw err;
  }
}

async function readHead(deps: CliReadDeps, bucket: string, name: string, signal?: AbortSignal): Promise<Buffer> {
  const { body } = await deps.store.get(bucket, name, { range: { start: 0, end: 4095 }, signal });
  const chunks: Buffer[] = [];
  for await (const c of body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/**
 * A delta the CLI made without -D from compressed inputs: decoded without
 * recompression (-R), which gives the decompressed target, then compressed
 * again only where that reproduces dg-file-sha256 (./gzip.ts). Everything
 * happens before the first byte is sent, so a failure is a clean error.
 */
async function decodeCompressed(deps: CliReadDeps, bucket: string, meta: ObjectMeta, blob: string, ref: { path: string; size: number; sha256: string }, hdr: XdeltaHeader, signal?: AbortSignal): Promise<string> {
  const comp = hdr.targetComp;
  const why = (detail: string) =>
    new S3Error(
      'NotImplemented',
      `${meta.key} was stored by the DeltaGlider CLI as an xdelta3 delta of decompressed ${comp === 'G' ? 'gzip' : 'compressed'} data (xdelta3 without -D), and ${detail}; the CLI's own download of it fails its SHA-256 check too.`,
    );
  // xdelta3 runs the compressor the header names; only gzip is let through.
  if ((comp && comp !== 'G') || (hdr.sourceComp && hdr.sourceComp !== 'G')) throw why('only gzip data can be handled by this release');
  const delta = tempPath(deps.tmpDir, 'cli-delta');
  const raw = tempPath(deps.tmpDir, 'cli-raw');
  try {
    const { body } = await deps.store.get(bucket, blob, { signal });
    await pipeline(body, createWriteStream(delta));
    const r = await deps.codec.decodeWith(['-d', '-f', '-R', '-s', ref.path, delta, raw], ref.size, signal);
    if (r.exitCode !== 0) throw why(`xdelta3 could not decode it (${r.stderr.split('\n').pop()})`);
    if (!comp) return await rename(raw);
    const rebuilt = await rebuildFromRaw(raw, { sha256: meta.sha256, size: meta.size }, deps.tmpDir, signal, ref);
    if (!rebuilt) throw why('no gzip settings tried reproduce the bytes whose SHA-256 the CLI recorded');
    return rebuilt;
  } finally {
    await fsp.rm(delta, { force: true });
    await fsp.rm(raw, { force: true });
  }

  async function rename(file: string): Promise<string> {
    const to = tempPath(deps.tmpDir, 'cli-out');
    await fsp.rename(file, to);
    return to;
  }
}
