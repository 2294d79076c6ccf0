import * as fsp from 'node:fs/promises';
import type { Codec } from './codec.js';
import { deltaspaceOf } from './keys.js';
import type { References } from './references.js';
import type { FileRouter } from './router.js';
import { tempPath } from './spool.js';
import type { EngineOptions, PreEncode } from './types.js';

export interface PreEncodeDeps {
  codec: Codec;
  refs: References;
  router: FileRouter;
  opts: EngineOptions;
}

/**
 * Starts encoding an upload of `key` against its deltaspace's reference
 * while the body is still arriving; null when that cannot help (not
 * eligible, too large, or no reference yet).
 */
export async function prepareDelta(deps: PreEncodeDeps, bucket: string, key: string, size: number | undefined): Promise<PreEncode | null> {
  const { codec, refs, router, opts } = deps;
  if (opts.writeFormat === 1) return null;
  if (size === undefined || size === 0 || size > opts.maxDeltaObjectSize || !router.isDeltaEligible(key)) return null;
  const ref = await refs.read(bucket, deltaspaceOf(key));
  if (!ref) return null;
  const handle = await refs.open(bucket, ref).catch(() => null);
  if (!handle) return null;
  const out = tempPath(opts.tmpDir, 'pre-delta');
  const enc = codec.encodeStream(handle.path, handle.size, out, opts.maxDeltaRatio * size);
  // No codec slot free now: the upload is encoded after it arrives.
  if (!enc) {
    handle.release();
    return null;
  }
  let released = false;
  const release = () => {
    if (!released) handle.release();
    released = true;
  };
  void enc.done.then(release, release);
  return {
    sink: enc.stdin,
    refSha: ref.sha256,
    finish: () => enc.done.then((complete) => (complete ? out : null), () => null),
    stopped: () => enc.stopped(),
    cancel: async () => {
      enc.kill();
      await enc.done.catch(() => {});
      release();
      await fsp.rm(out, { force: true });
    },
  };
}
