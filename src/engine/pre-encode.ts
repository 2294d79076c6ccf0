import * as fsp from 'node:fs/promises';
import type { Engine } from './engine.js';
import { deltaspaceOf } from './keys.js';
import type { References } from './references.js';
import { tempPath } from './spool.js';
import type { PreEncode } from './types.js';

/**
 * Starts encoding an upload of `key` against its deltaspace's reference
 * while the body is still arriving; null when that cannot help (not
 * eligible, too large, or no reference yet).
 */
export async function prepareDelta(engine: Engine, refs: References, bucket: string, key: string, size: number | undefined): Promise<PreEncode | null> {
  if (size === undefined || size === 0 || size > engine.opts.maxDeltaObjectSize || !engine.router.isDeltaEligible(key)) return null;
  const space = deltaspaceOf(key);
  const ref = await refs.read(bucket, space);
  if (!ref) return null;
  const handle = await refs.open(bucket, space, ref.sha256).catch(() => null);
  if (!handle) return null;
  const out = tempPath(engine.opts.tmpDir, 'pre-delta');
  const enc = engine.codec.encodeStream(handle.path, handle.size, out);
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
    finish: () => enc.done.then(() => out, () => null),
    cancel: async () => {
      enc.kill();
      await enc.done.catch(() => {});
      release();
      await fsp.rm(out, { force: true });
    },
  };
}
