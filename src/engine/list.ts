import { LRUCache } from 'lru-cache';
import { mapLimit } from '../log.js';
import type { Backend, BucketInfo } from '../storage/backend.js';
import { keyOfMetaBlob, META_SUFFIX, metaBlob, OBJECT_SUFFIX, objectSidecar } from './keys.js';
import { compareKeys, paginate, type Page } from './listing.js';
import type { ObjectMeta } from './meta.js';
import { SidecarCache } from './sidecar-cache.js';

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

async function scan(backend: Backend, bucket: string, prefix: string, generation: number): Promise<ListingSnapshot> {
  const keys = new Map<string, { name: string; etag?: string }[]>();
  for await (const blob of backend.list(bucket, { prefix })) {
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
export class Lister {
  /** Listing snapshots for continued pages, at most 1M keys in all. */
  private readonly listings = new LRUCache<string, ListingSnapshot>({ max: 64, maxSize: 1_000_000, sizeCalculation: (s) => Math.max(1, s.sorted.length) });
  private readonly sidecars: SidecarCache;
  /** Per bucket, a counter of the writes through this instance: a snapshot taken at another count is stale. */
  private readonly generations = new Map<string, number>();

  constructor(
    private readonly backend: Backend,
    private readonly headBucket: (bucket: string) => Promise<BucketInfo>,
    private readonly findObject: (bucket: string, key: string) => Promise<ObjectMeta | null>,
  ) {
    this.sidecars = new SidecarCache(backend);
  }

  /**
   * Sidecar look-ups for the streamed listing, reused like snapshots (same
   * TTL, same invalidation) on a backend no other instance writes. On a
   * shared one they live for one request only: another instance's write
   * must show on the next first page (SNAPSHOT_TTL_MS above).
   */
  private readonly lookups = new LRUCache<string, { generation: number; at: number; found: Promise<{ name: string; etag?: string }[]> }>({ max: 10_000 });

  private lookup(bucket: string, key: string, memo: Map<string, Promise<{ name: string; etag?: string }[]>>): Promise<{ name: string; etag?: string }[]> {
    const id = `${bucket}\0${key}`;
    const generation = this.generations.get(bucket) ?? 0;
    const hit = this.backend.shared ? undefined : this.lookups.get(id);
    if (hit && hit.generation === generation && Date.now() - hit.at < SNAPSHOT_TTL_MS) return hit.found;
    const mine = memo.get(id);
    if (mine) return mine;
    const found = Promise.all([objectSidecar(key), metaBlob(key, 'delta'), metaBlob(key, 'direct')].map((n) => this.backend.head(bucket, n))).then((infos) =>
      infos.filter((i) => i !== null).map((i) => ({ name: i.name, etag: i.etag })),
    );
    memo.set(id, found);
    if (!this.backend.shared) {
      const entry = { generation, at: Date.now(), found };
      // Only this entry: a newer one under the same id stays.
      found.catch(() => this.lookups.peek(id) === entry && this.lookups.delete(id));
      this.lookups.set(id, entry);
    }
    return found;
  }

  /** A write in `bucket` went through this instance. */
  invalidate(bucket: string): void {
    this.generations.set(bucket, (this.generations.get(bucket) ?? 0) + 1);
  }

  async list(input: ListInput): Promise<ListResult> {
    await this.headBucket(input.bucket);
    const generation = this.generations.get(input.bucket) ?? 0;
    let keys: ListingSnapshot['keys'];
    let page: Page;
    if (this.backend.listSorted) {
      const memo = new Map<string, Promise<{ name: string; etag?: string }[]>>();
      ({ keys, page } = await streamPage(this.backend, input, (b, k) => this.lookup(b, k, memo)));
    } else {
      const id = `${input.bucket}\0${input.prefix}`;
      let snap = input.after !== '' ? this.listings.get(id) : undefined;
      if (!snap || snap.generation !== generation || Date.now() - snap.at > SNAPSHOT_TTL_MS) {
        snap = await scan(this.backend, input.bucket, input.prefix, generation);
        this.listings.set(id, snap);
      }
      keys = snap.keys;
      page = paginate(snap.sorted, input);
    }
    const metas = await mapLimit(page.keys, 16, async (key) => {
      const found = keys.get(key)!;
      try {
        if (found.length === 1 && found[0].etag && found[0].name.endsWith(OBJECT_SUFFIX)) return await this.sidecars.read(input.bucket, found[0].name, found[0].etag);
        return await this.findObject(input.bucket, key);
      } catch {
        // An unreadable sidecar (damage, or a newer release's format) is left
        // out of the listing; GET and HEAD of the key say why.
        return null;
      }
    });
    // A key deleted between the listing and the sidecar read is left out.
    const objects = metas.filter((m): m is ObjectMeta => m !== null);
    return { objects, commonPrefixes: page.commonPrefixes, truncated: page.truncated, last: page.last };
  }
}

const LAST_CHAR = '\u{10FFFF}';

/**
 * The point in blob-name order after which every sidecar of user key `x` and
 * of every user key before `x` has been listed. Sidecar names are keys plus
 * `.delta.meta`, `.direct.meta` (format 1) or `.object.meta` (format 2, the
 * last of the three), and '.' sorts above ' ', '!', '-' and the like: key `a`
 * (blob `a.object.meta`) sorts before key `a-b` but its blob after
 * `a-b.delta.meta`. So `x` waits for `y.object.meta` of each prefix `y` of
 * `x` followed by a character up to '.', and for its own.
 */
export function releasePoint(x: string): string {
  let point = `${x}${OBJECT_SUFFIX}`;
  for (let i = 1; i < x.length; i++) {
    if (x[i] <= '.') {
      const p = `${x.slice(0, i)}${OBJECT_SUFFIX}`;
      if (compareKeys(p, point) > 0) point = p;
    }
  }
  return point;
}

/**
 * The keys whose sidecars a key `x` waits for before its place is settled:
 * each prefix of `x` followed by a character up to '.' (see releasePoint).
 */
export function waitsOf(x: string): string[] {
  const out: string[] = [];
  for (let i = 1; i < x.length; i++) if (x[i] <= '.') out.push(x.slice(0, i));
  return out;
}

/** Every sidecar of a key, looked up by name (backends that cannot list it cheaply). */
export type SidecarLookup = (bucket: string, key: string) => Promise<{ name: string; etag?: string }[]>;

/**
 * One page from a backend that lists in order: the listing streams from the
 * marker on and stops as soon as the page is known to be complete, so a page
 * costs about a page of backend listing whatever the bucket's size.
 *
 * A key waits for the sidecars of its prefixes that sort after its own
 * (releasePoint): `many/obj-1.txt` for `many/obj.object.meta`, which the
 * stream meets only after every `many/obj-*`. Rather than stream that far,
 * once a page's worth of keys waits, the prefix is looked up by name (a few
 * HEADs or stats a page, remembered by the caller).
 */
async function streamPage(backend: Backend, input: ListInput, lookup: SidecarLookup): Promise<{ keys: ListingSnapshot['keys']; page: Page }> {
  const keys: ListingSnapshot['keys'] = new Map();
  const pending: string[] = []; // seen, not yet safe to place; sorted
  const released: string[] = [];
  /** Keys whose every sidecar is known (looked up): nothing more of them can come. */
  const settled = new Set<string>();
  let pos = '';
  const add = (key: string, name: string, etag?: string) => {
    const seen = keys.get(key);
    if (seen) {
      if (!seen.some((x) => x.name === name)) seen.push({ name, etag });
      return;
    }
    keys.set(key, [{ name, etag }]);
    let at = pending.length;
    while (at > 0 && compareKeys(pending[at - 1], key) > 0) at--;
    pending.splice(at, 0, key);
  };
  // Keys outside the prefix or not after the marker are never on the page: no need to wait for them.
  const needless = (y: string) => !y.startsWith(input.prefix) || compareKeys(y, input.after) <= 0;
  const waiting = (x: string, end: boolean) => {
    if (end) return [];
    const own = `${x}${OBJECT_SUFFIX}`;
    const far = !settled.has(x) && compareKeys(own, pos) > 0 ? [x] : [];
    for (const y of waitsOf(x)) if (!settled.has(y) && !needless(y) && compareKeys(`${y}${OBJECT_SUFFIX}`, pos) > 0) far.push(y);
    return far;
  };
  const release = async (end = false) => {
    while (pending.length > 0) {
      const x = pending[0];
      const far = waiting(x, end);
      if (far.length === 0) {
        released.push(pending.shift()!);
        continue;
      }
      // Look a blocking prefix up only once a page's worth of keys waits behind it.
      const prefixes = far.filter((y) => y !== x);
      if (prefixes.length === 0 || pending.length <= Math.min(input.maxKeys, 64)) return;
      for (const y of prefixes) {
        settled.add(y);
        for (const f of await lookup(input.bucket, y)) add(y, f.name, f.etag);
      }
    }
  };
  // Every key after the marker has its blobs after the marker too; after a
  // common prefix, nothing under it is needed again.
  let startAfter = compareKeys(input.after, input.prefix) > 0 ? input.after : undefined;
  const d = input.delimiter;
  if (startAfter && d && startAfter.startsWith(input.prefix) && startAfter.indexOf(d, input.prefix.length) === startAfter.length - d.length) {
    startAfter += LAST_CHAR;
  }
  // Entries (keys and common prefixes) on the page so far, counted as keys
  // are released, in order: a page is complete once there is one too many.
  let counted = 0;
  let entries = 0;
  let lastCp: string | undefined;
  // Where the backend lists in calls (S3: 1000 names each), a page that has
  // entries, all placed, ends where a call does, rather than pay a further
  // call to find the entry after it: S3 may return fewer keys than max-keys
  // with IsTruncated (ListObjectsV2 reference, "MaxKeys"). So a page costs
  // one call; the next page starts after its last entry.
  let cutAtCall = false;
  const callEnd = (more: boolean) => {
    if (!more || input.maxKeys === 0 || pending.length > 0 || counted < released.length || entries === 0) return false;
    cutAtCall = true;
    return true;
  };
  for (;;) {
    let skipTo: string | undefined;
    for await (const blob of backend.listSorted!(input.bucket, { prefix: input.prefix, startAfter, suffixes: [META_SUFFIX], callEnd })) {
      const k = keyOfMetaBlob(blob.name);
      pos = blob.name;
      if (k && !settled.has(k.key) && !needless(k.key)) add(k.key, blob.name, blob.etag);
      // After adding: this very blob may be the one a key was waiting for.
      await release();
      let cp: string | undefined;
      for (; counted < released.length; counted++) {
        const key = released[counted];
        const at = d ? key.indexOf(d, input.prefix.length) : -1;
        cp = at >= 0 ? key.slice(0, at + d.length) : undefined;
        if (cp === undefined) entries++;
        else if (cp !== lastCp && cp !== input.after) {
          entries++;
          lastCp = cp;
        }
        if (entries > input.maxKeys) return { keys, page: paginate(released, input) };
      }
      // Inside a rolled-up common prefix: jump past it in the backend.
      if (cp !== undefined && pending.every((p) => p.startsWith(cp))) {
        pending.length = 0;
        skipTo = cp + LAST_CHAR;
        break;
      }
    }
    if (skipTo === undefined || cutAtCall) break;
    startAfter = skipTo;
  }
  if (cutAtCall) {
    const page = paginate(released, input);
    return { keys, page: { ...page, truncated: true } };
  }
  await release(true);
  return { keys, page: paginate(released, input) };
}
