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

/** The sorted user keys under a prefix, as one scan of the backend saw them. */
export interface ListingSnapshot {
  /** key -> its sidecars as listed (two while a kind-changing overwrite is in flight). */
  keys: Map<string, { name: string; etag?: string }[]>;
  sorted: string[];
  at: number;
  generation: number;
}

/**
 * How long a continued listing (a page after the first) may reuse the scan
 * made for an earlier page. Writes through this instance invalidate it at
 * once; writes through other instances sharing the backend show up on the
 * next first page, or after this long.
 */
export const SNAPSHOT_TTL_MS = 30_000;

async function scan(engine: Engine, bucket: string, prefix: string): Promise<ListingSnapshot> {
  const generation = engine.generation(bucket);
  const keys = new Map<string, { name: string; etag?: string }[]>();
  for await (const blob of engine.backend.list(bucket, { prefix })) {
    const k = keyOfMetaBlob(blob.name);
    if (!k) continue;
    const seen = keys.get(k.key) ?? [];
    seen.push({ name: blob.name, etag: blob.etag });
    keys.set(k.key, seen);
  }
  return { keys, sorted: [...keys.keys()].sort(compareKeys), at: Date.now(), generation };
}

/**
 * Lists user keys. User keys sort differently from their blob names (the
 * suffixes), so a page needs every sidecar name under the prefix: one scan of
 * the backend (blob names start with the user key, so the prefix carries
 * over), reused for the following pages of the same listing. Only the
 * sidecars of the keys on the returned page are read, and those are cached by
 * etag.
 */
export async function listObjects(engine: Engine, input: ListInput): Promise<ListResult> {
  await engine.headBucket(input.bucket);
  const id = `${input.bucket}\0${input.prefix}`;
  let snap = input.after !== '' ? engine.listings.get(id) : undefined;
  if (!snap || snap.generation !== engine.generation(input.bucket) || Date.now() - snap.at > SNAPSHOT_TTL_MS) {
    snap = await scan(engine, input.bucket, input.prefix);
    engine.listings.set(id, snap);
  }
  const { keys, sorted } = snap;
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
