import * as fsp from 'node:fs/promises';
import type { PassThrough, Readable } from 'node:stream';
import type { Backend, ByteRange } from '../storage/backend.js';
import type { Codec } from './codec.js';
import { dataBlob, deltaspaceOf } from './keys.js';
import type { ObjectMeta } from './meta.js';
import type { References } from './references.js';
import { VerifyingStream } from './verify.js';

// Reading objects back: direct blobs stream from the backend, deltas stream
// from xdelta3's output; both through the SHA-256 check of ./verify.ts.

export interface ReadDeps {
  backend: Backend;
  refs: References;
  codec: Codec;
}

/**
 * Streams an object (or an inclusive range of it). Every full read is
 * verified against the stored SHA-256 before its last chunk is released;
 * delta reads are verified even for ranges, since decoding yields the
 * whole object anyway.
 */
export async function openStored(deps: ReadDeps, bucket: string, meta: ObjectMeta, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
  const { backend, refs, codec } = deps;
  const what = `${bucket}/${meta.key}`;
  const verify = (start?: number, end?: number) => new VerifyingStream({ sha256: meta.sha256, size: meta.size, start, end, what });
  if (meta.kind === 'direct') {
    if (range && !(range.start === 0 && range.end === meta.size - 1)) {
      const { body, size } = await backend.getStream(bucket, dataBlob(meta.key, 'direct'), { range, signal });
      if (size !== meta.stored_size) {
        body.destroy();
        throw new Error(`${what}: stored size ${size}, sidecar says ${meta.stored_size}`);
      }
      return body;
    }
    const { body } = await backend.getStream(bucket, dataBlob(meta.key, 'direct'), { signal });
    return pipeInto(body, verify());
  }
  const space = deltaspaceOf(meta.key);
  const handle = await refs.open(bucket, space, meta.reference_sha256!, signal);
  try {
    const deltaName = dataBlob(meta.key, 'delta');
    const local = backend.localPath?.(bucket, deltaName);
    let delta: string | Readable;
    if (local) {
      await fsp.access(local);
      delta = local;
    } else {
      delta = (await backend.getStream(bucket, deltaName, { signal })).body;
    }
    const decoded = codec.decode(handle.path, handle.size, delta, signal);
    const out = pipeInto(decoded, verify(range?.start, range?.end));
    out.once('close', () => handle.release());
    return out;
  } catch (err) {
    handle.release();
    throw err;
  }
}

/** Pipes `src` into `dst`, carrying errors forward, and returns `dst`. */
function pipeInto<T extends PassThrough | VerifyingStream>(src: Readable, dst: T): T {
  src.on('error', (err) => dst.destroy(err));
  dst.on('close', () => src.destroy());
  src.pipe(dst);
  return dst;
}
