import * as fsp from 'node:fs/promises';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { NotFoundError } from '../errors.js';
import type { Backend, ByteRange } from '../storage/backend.js';
import { BLOCK_SIZE, BlockVerifier, blockSpan } from './blocks.js';
import type { Codec } from './codec.js';
import type { DecodedCache } from './decoded-cache.js';
import { isGzipForm, type GzipForm, type GzipKind } from './gzip-form.js';
import { UnsupportedFormatError, type ObjectMeta, type StoredForm } from './meta.js';
import type { References } from './references.js';
import { largestSourceSegment } from './vcdiff.js';
import { IntegrityError, VerifyingStream } from './verify.js';

// Reading objects back. A read uses exactly the blobs its sidecar names (one
// version from the first byte to the last) and checks every byte it sends:
// full reads against the whole-object SHA-256, ranged reads block by block
// against the CRC-32 digests recorded at write time (./blocks.ts). Objects
// without block digests (format 1) are hashed whole even for a range.

export interface ReadDeps {
  backend: Backend;
  refs: References;
  codec: Codec;
  /** Decoded delta objects for ranged reads (./decoded-cache.ts). */
  decoded?: DecodedCache;
  /** The gzip form (./gzip-form.ts); without it such forms are unknown. */
  gzip?: GzipKind;
}

type DirectForm = Extract<StoredForm, { kind: 'direct'; codec?: never }> & { kind: 'direct'; blob: string; size: number; etag: string };
type DeltaForm = Extract<StoredForm, { kind: 'delta'; codec: 'xdelta3' }>;

/** The first stored form this release can read; refuses, never guesses, otherwise. */
export function readableForm(meta: ObjectMeta, gzip = true): DirectForm | DeltaForm | GzipForm {
  for (const f of meta.stored) {
    if (f.kind === 'direct' || (f.kind === 'delta' && (f as DeltaForm).codec === 'xdelta3')) return f as DirectForm | DeltaForm;
    if (gzip && isGzipForm(f)) return f;
  }
  throw new UnsupportedFormatError(`stored as ${meta.stored.map((f) => f.kind).join(', ')}, which this release cannot read`);
}

/** Packed block digests of an object, or null when it has none. */
async function digestsOf(deps: ReadDeps, bucket: string, meta: ObjectMeta, first: number, last: number): Promise<Buffer | null> {
  const b = meta.blocks;
  if (!b) return null;
  if (b.inline !== undefined) return Buffer.from(b.inline, 'base64').subarray(first * 4, (last + 1) * 4);
  const { body } = await deps.backend.getStream(bucket, b.blob!, { range: { start: first * 4, end: last * 4 + 3 } });
  const chunks: Buffer[] = [];
  for await (const c of body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/**
 * Streams an object, or an inclusive range of it. Throws NotFoundError if a
 * blob is gone before the first byte (the caller may resolve again).
 */
export async function openStored(
  deps: ReadDeps,
  bucket: string,
  meta: ObjectMeta,
  range?: ByteRange,
  signal?: AbortSignal,
  /**
   * The caller's consumer is the last to hold each chunk and hands it back
   * (ChunkPool.recycle) once written: a whole read of a delta may then run
   * on recycled buffers (Codec.decode). Never for a body that anything
   * else keeps chunks of.
   */
  recycle = false,
): Promise<Readable> {
  const form = readableForm(meta, !!deps.gzip);
  const what = `${bucket}/${meta.key}`;
  const full = !range || (range.start === 0 && range.end === meta.size - 1);
  // A delta or gzip form is served from the shared decode of its content
  // (./decoded-cache.ts) when it fits: one decode for all the parallel ranges
  // a download client sends, and for the many full GETs of the latest
  // release a fleet of CI runners makes (from the second on: the first
  // whole read of a delta version decodes straight to its client, see
  // DecodedCache.wants). A gzip form always goes through it: its rebuild
  // costs far more than writing the copy. Keyed by content (SHA-256 and
  // size), so a format 1 blob name written again can never serve stale bytes.
  const cacheId = `${bucket}\0${meta.sha256}\0${meta.size}`;
  const decoded = form.kind !== 'direct' && deps.decoded?.wants(cacheId, meta.size, full, form.kind === 'gzip') ? deps.decoded : undefined;
  const open = (from: number, to: number) =>
    decoded
      ? // The fill recycles its chunks itself once they are in the file (./decoded-cache.ts).
        decoded.range(cacheId, meta.size, () => openForm(deps, bucket, form, undefined, undefined, what, true), from, to, full && recycle)
      : openForm(deps, bucket, form, from === 0 && to === meta.size - 1 ? undefined : { start: from, end: to }, signal, what, full && recycle);
  let out: Transform;
  if (full || !meta.blocks) {
    // Whole-object SHA-256; a range is cut out of the verified stream.
    out = pipeInto(await open(0, meta.size - 1), new VerifyingStream({ sha256: meta.sha256, size: meta.size, start: range?.start, end: range?.end, what }));
  } else {
    const bs = meta.blocks.size ?? BLOCK_SIZE;
    const span = blockSpan(range.start, range.end, meta.size, bs);
    const digests = await digestsOf(deps, bucket, meta, span.first, Math.floor(span.to / bs));
    if (!digests) throw new IntegrityError(`${what}: block digests missing`);
    out = pipeInto(await open(span.from, span.to), new BlockVerifier({ digests, firstBlock: span.first, blockSize: bs, from: span.from, start: range.start, end: range.end, size: meta.size, what }));
  }
  // A decode that fails verification is not kept for the next reader.
  if (decoded) out.once('error', (err) => err instanceof IntegrityError && decoded.drop(cacheId));
  return out;
}

/**
 * The bytes of one stored form from `span.start` on (direct: exactly the
 * span; delta: decoded from the start, with the bytes before the span
 * dropped and the decoder stopped once the reader has what it needs).
 * `recycle`: the caller's consumer recycles whole chunks (Codec.decode).
 */
async function openForm(
  deps: ReadDeps,
  bucket: string,
  form: DirectForm | DeltaForm | GzipForm,
  span: ByteRange | undefined,
  signal: AbortSignal | undefined,
  what: string,
  recycle = false,
): Promise<Readable> {
  const { backend, refs, codec } = deps;
  if (form.kind === 'gzip') {
    // Rebuilt from the start (deflate has no random access); bytes before the span are dropped.
    const out = await deps.gzip!.open(bucket, form as GzipForm, signal);
    return span && span.start > 0 ? pipeInto(out, new Skip(span.start)) : out;
  }
  if (form.kind === 'direct') {
    const { body, size } = await backend.getStream(bucket, form.blob, { range: span, signal });
    if (size !== form.size) {
      body.destroy();
      throw new IntegrityError(`${what}: stored blob has ${size} bytes, the sidecar says ${form.size}`);
    }
    return body;
  }
  const handle = await refs.open(bucket, form.reference, signal);
  try {
    const local = backend.localPath?.(bucket, form.blob);
    let delta: string | Readable;
    // How far one window of the delta reaches into the reference: recorded
    // at write time, or read from the delta's headers; unknown for an older
    // delta streamed from a remote backend (then the whole reference).
    let segment = form.max_source_segment;
    if (local) {
      // Opened by xdelta3 right away; a replaced blob outlives its grace period.
      await fsp.access(local).catch(() => {
        throw new NotFoundError(form.blob);
      });
      delta = local;
      segment ??= (await largestSourceSegment(local)) ?? undefined;
    } else {
      delta = (await backend.getStream(bucket, form.blob, { signal })).body;
    }
    // A whole read has one consumer, which hands the chunks back once sent
    // (./chunk-pool.ts); a range is cut into views, which never are.
    let out = codec.decode(handle.path, handle.size, delta, signal, segment, recycle && !span);
    out.once('close', () => handle.release());
    if (span && span.start > 0) out = pipeInto(out, new Skip(span.start));
    return out;
  } catch (err) {
    handle.release();
    throw err;
  }
}

/** Drops the first `n` bytes. */
class Skip extends Transform {
  constructor(private left: number) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.left >= chunk.length) {
      this.left -= chunk.length;
      cb();
      return;
    }
    const out = this.left > 0 ? chunk.subarray(this.left) : chunk;
    this.left = 0;
    cb(null, out);
  }
}

/**
 * Pipes `src` into `dst`, carrying errors forward, and returns `dst`. When
 * `dst` has all it needs (a BlockVerifier past its range) the source is
 * stopped, so a ranged read of a delta does not decode the whole object.
 */
function pipeInto<T extends Transform>(src: Readable, dst: T): T {
  src.on('error', (err) => dst.destroy(err));
  dst.on('close', () => src.destroy());
  if (dst instanceof BlockVerifier) {
    dst.once('complete', () => {
      src.unpipe(dst);
      src.destroy();
      dst.end();
    });
  }
  src.pipe(dst);
  return dst;
}
