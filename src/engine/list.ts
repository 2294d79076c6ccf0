import { mapLimit } from '../log.js';
import type { Engine } from './engine.js';
import { keyOfMetaBlob } from './keys.js';
import { compareKeys, paginate, type Page } from './listing.js';
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
  let keys: ListingSnapshot['keys'];
  let page: Page;
  if (engine.backend.listSorted) {
    ({ keys, page } = await streamPage(engine, input));
  } else {
    const id = `${input.bucket}\0${input.prefix}`;
    let snap = input.after !== '' ? engine.listings.get(id) : undefined;
    if (!snap || snap.generation !== engine.generation(input.bucket) || Date.now() - snap.at > SNAPSHOT_TTL_MS) {
      snap = await scan(engine, input.bucket, input.prefix);
      engine.listings.set(id, snap);
    }
    keys = snap.keys;
    page = paginate(snap.sorted, input);
  }
  const metas = await mapLimit(page.keys, 16, async (key) => {
    const found = keys.get(key)!;
    if (found.length !== 1 || !found[0].etag) return engine.findObject(input.bucket, key);
    return engine.sidecars.read(input.bucket, found[0].name, found[0].etag);
  });
  // A key deleted between the listing and the sidecar read is left out.
  const objects = metas.filter((m): m is ObjectMeta => m !== null);
  return { objects, commonPrefixes: page.commonPrefixes, truncated: page.truncated, last: page.last };
}

const LAST_CHAR = '\u{10FFFF}';

/**
 * The point in blob-name order after which every sidecar of user key `x` and
 * of every user key before `x` has been listed. Blob names are keys plus
 * `.delta.meta`/`.direct.meta`, and '.' sorts above ' ', '!', '-' and the
 * like: key `a` (blob `a.direct.meta`) sorts before key `a-b` but its blob
 * after `a-b.delta.meta`. So `x` waits for `y.direct.meta` of each prefix `y`
 * of `x` followed by a character up to '.', and for its own.
 */
export function releasePoint(x: string): string {
  let point = `${x}.direct.meta`;
  for (let i = 1; i < x.length; i++) {
    if (x[i] <= '.') {
      const p = `${x.slice(0, i)}.direct.meta`;
      if (compareKeys(p, point) > 0) point = p;
    }
  }
  return point;
}

/**
 * One page from a backend that lists in order: the listing streams from the
 * marker on and stops as soon as the page is known to be complete, so a page
 * costs about a page of backend listing whatever the bucket's size.
 */
async function streamPage(engine: Engine, input: ListInput): Promise<{ keys: ListingSnapshot['keys']; page: Page }> {
  const keys: ListingSnapshot['keys'] = new Map();
  const pending: string[] = []; // seen, not yet safe to place; sorted
  const released: string[] = [];
  const release = (upTo?: string) => {
    while (pending.length > 0 && (upTo === undefined || compareKeys(releasePoint(pending[0]), upTo) <= 0)) released.push(pending.shift()!);
  };
  // Every key after the marker has its blobs after the marker too; after a
  // common prefix, nothing under it is needed again.
  let startAfter = compareKeys(input.after, input.prefix) > 0 ? input.after : undefined;
  const d = input.delimiter;
  if (startAfter && d && startAfter.startsWith(input.prefix) && startAfter.indexOf(d, input.prefix.length) === startAfter.length - d.length) {
    startAfter += LAST_CHAR;
  }
  let checked = 0;
  for (;;) {
    let skipTo: string | undefined;
    for await (const blob of engine.backend.listSorted!(input.bucket, { prefix: input.prefix, startAfter })) {
      const k = keyOfMetaBlob(blob.name);
      if (k) {
        const seen = keys.get(k.key);
        if (seen) {
          if (!seen.some((x) => x.name === blob.name)) seen.push({ name: blob.name, etag: blob.etag });
        } else {
          keys.set(k.key, [{ name: blob.name, etag: blob.etag }]);
          let at = pending.length;
          while (at > 0 && compareKeys(pending[at - 1], k.key) > 0) at--;
          pending.splice(at, 0, k.key);
        }
      }
      // After adding: this very blob may be the one a key was waiting for.
      release(blob.name);
      if (released.length > checked) {
        checked = released.length;
        const page = paginate(released, input);
        if (page.truncated) return { keys, page };
        // Inside a rolled-up common prefix: jump past it in the backend.
        const last = page.commonPrefixes[page.commonPrefixes.length - 1];
        if (last !== undefined && released[released.length - 1].startsWith(last) && pending.every((p) => p.startsWith(last))) {
          pending.length = 0;
          skipTo = last + LAST_CHAR;
          break;
        }
      }
    }
    if (skipTo === undefined) break;
    startAfter = skipTo;
  }
  release();
  return { keys, page: paginate(released, input) };
}
