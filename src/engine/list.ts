import { mapLimit } from '../log.js';
import type { Engine } from './engine.js';
import { keyOfMetaBlob } from './keys.js';
import { compareKeys, paginate } from './listing.js';
import type { ObjectMeta } from './meta.js';

export interface ListInput {
  bucket: string;
  prefix: string;
  delimiter: string;
  /** Exclusive: a key or common prefix already returned (marker, start-after, token). */
  after: string;
  maxKeys: number;
}

export interface ListResult {
  objects: ObjectMeta[];
  commonPrefixes: string[];
  truncated: boolean;
  last?: string;
}

/**
 * Lists user keys. The backend is asked for every sidecar under the prefix
 * (blob names start with the user key, so the prefix carries over); only the
 * sidecars of the keys on the returned page are read.
 */
export async function listObjects(engine: Engine, input: ListInput): Promise<ListResult> {
  await engine.headBucket(input.bucket);
  // key -> the etags of its sidecars as listed (two while an overwrite that
  // changed the storage kind is in flight).
  const keys = new Map<string, { name: string; etag?: string }[]>();
  for await (const blob of engine.backend.list(input.bucket, { prefix: input.prefix })) {
    const k = keyOfMetaBlob(blob.name);
    if (!k) continue;
    const seen = keys.get(k.key) ?? [];
    seen.push({ name: blob.name, etag: blob.etag });
    keys.set(k.key, seen);
  }
  const sorted = [...keys.keys()].sort(compareKeys);
  const page = paginate(sorted, input);
  const metas = await mapLimit(page.keys, 16, async (key) => {
    const found = keys.get(key)!;
    if (found.length !== 1 || !found[0].etag) return engine.findObject(input.bucket, key);
    return engine.sidecars.read(input.bucket, found[0].name, found[0].etag);
  });
  // A key deleted between the listing and the sidecar read is left out.
  const objects = metas.filter((m): m is ObjectMeta => m !== null);
  return { objects, commonPrefixes: page.commonPrefixes, truncated: page.truncated, last: page.last };
}
