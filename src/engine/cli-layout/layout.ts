import * as fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { AlreadyExistsError, S3Error } from '../../errors.js';
import { mapLimit, type Logger } from '../../log.js';
import type { Backend, BucketInfo, ByteRange } from '../../storage/backend.js';
import type { PlainObject, PlainStore } from '../../storage/plain.js';
import type { Codec } from '../codec.js';
import { deltaspaceOf, spacePrefix } from '../keys.js';
import type { ListInput, ListResult } from '../list.js';
import { KeyedRwLock } from '../../locks.js';
import { UnsupportedFormatError, type ObjectMeta } from '../meta.js';
import { ReferenceCache } from '../refcache.js';
import type { FileRouter } from '../router.js';
import type { EngineOptions, PutInput } from '../types.js';
import { listCliPage } from './list.js';
import { CLI_INTERNAL, deltaName, DELTA_SUFFIX, describe, field, parseCreated, referenceName, userKeyOf } from './names.js';
import type { BucketUsage } from '../usage.js';
import { openCli } from './read.js';
import { putCli } from './write.js';

/**
 * How often the CLI buckets' usage figures are counted again: the CLI writes
 * without the proxy, so figures kept up by the proxy's own writes (as for
 * native buckets) would miss its uploads.
 */
export const CLI_USAGE_MS = 3600_000;
/** HEADs of delta objects per second while counting (a delta's original size is in its metadata). */
export const CLI_USAGE_HEADS_PER_SECOND = 200;

// Proxy buckets mapped onto whole backend buckets in the DeltaGlider CLI's
// layout (config backend.cli_buckets; docs/storage-format.md, "DeltaGlider
// CLI layout"). The Engine hands every object operation on such a bucket to
// this class; format 2 never sees them.

export interface CliLayoutOptions {
  store: PlainStore;
  /** proxy bucket -> backend bucket */
  buckets: Map<string, string>;
}

export interface CliLayoutDeps {
  codec: Codec;
  router: FileRouter;
  opts: EngineOptions;
  log: Logger;
}

export class CliLayout {
  private readonly store: PlainStore;
  private readonly map: Map<string, string>;
  private readonly cache: ReferenceCache;
  private readonly cacheDir: string;
  /** Reference use (read) against reference removal (write), per deltaspace. */
  private readonly spaceLocks = new KeyedRwLock();
  /** Usage figures per proxy bucket, from the last count (countUsage). */
  private readonly figures = new Map<string, BucketUsage>();
  private counting?: Promise<void>;
  private usageTimer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    o: CliLayoutOptions,
    private readonly d: CliLayoutDeps,
  ) {
    this.store = o.store;
    this.map = o.buckets;
    this.cacheDir = path.join(d.opts.cacheDir, 'cli-layout');
    // The cache reads references by name through the store (all it needs of a Backend).
    const reader = { getStream: (b: string, n: string, g: { range?: ByteRange; signal?: AbortSignal }) => this.store.get(b, n, g) } as unknown as Backend;
    this.cache = new ReferenceCache(this.cacheDir, d.opts.cacheBytes, reader);
  }

  has(bucket: string): boolean {
    return this.map.has(bucket);
  }

  private backend(bucket: string): string {
    return this.map.get(bucket)!;
  }

  /** After the engine has emptied its cache directory. */
  async init(): Promise<void> {
    await fsp.mkdir(this.cacheDir, { recursive: true });
  }

  close(): void {
    this.closed = true;
    if (this.usageTimer) clearInterval(this.usageTimer);
    this.cache.clear();
    (this.store as { close?: () => void }).close?.();
  }

  // ---- usage figures (docs/operations.md, "Usage figures") --------------

  /** Counts every CLI bucket now and then every CLI_USAGE_MS, in the background. */
  startUsage(): void {
    void this.countUsage();
    this.usageTimer = setInterval(() => void this.countUsage(), CLI_USAGE_MS).unref();
  }

  /** The figures of the CLI buckets counted so far. */
  usage(): Map<string, BucketUsage> {
    return new Map(this.figures);
  }

  /** Counts every CLI bucket (one count at a time; a caller during one waits for it). */
  countUsage(headsPerSecond = CLI_USAGE_HEADS_PER_SECOND): Promise<void> {
    this.counting ??= (async () => {
      for (const bucket of this.map.keys()) {
        if (this.closed) return;
        try {
          const u = await this.countBucket(bucket, headsPerSecond);
          if (u) this.figures.set(bucket, u);
          else this.figures.delete(bucket);
        } catch (err) {
          // (Closing cuts a count short: not worth a warning.)
          if (!this.closed) this.d.log.warn({ bucket, err }, 'usage figures: cannot count a CLI bucket');
        }
      }
    })().finally(() => (this.counting = undefined));
    return this.counting;
  }

  /**
   * One listing of the backend bucket: every stored object counts as stored
   * bytes (references included, the CLI's own `.deltaglider/` records not);
   * a direct object's size is also its logical size; a delta's logical size
   * is the original size in its metadata, one HEAD each, rate-limited. The
   * HEADs go in batches of `headsPerSecond` as the listing finds deltas, so
   * memory stays one batch of names whatever the bucket holds. Null when the
   * backend bucket does not exist.
   */
  private async countBucket(bucket: string, headsPerSecond: number): Promise<BucketUsage | null> {
    const b = this.backend(bucket);
    if (!(await this.store.headBucket(b))) return null;
    const u: BucketUsage = { objects: 0, logical: 0, stored: 0 };
    let batch: string[] = [];
    let lastBatch = 0;
    const sizeDeltas = async () => {
      // At most one batch a second.
      const wait = lastBatch + 1000 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait).unref());
      lastBatch = Date.now();
      const names = batch;
      batch = [];
      await mapLimit(names, 16, async (name) => {
        const h = await this.store.head(b, name);
        if (!h) return;
        u.objects++;
        try {
          u.logical += describe(name.slice(0, -DELTA_SUFFIX.length), h, 'delta', bucket).size;
        } catch {
          // A delta without the CLI's size field: its stored size is all we know.
          u.logical += h.size;
        }
      });
    };
    for await (const o of this.store.list(b, { prefix: '' })) {
      if (this.closed) return null;
      if (o.name.startsWith(CLI_INTERNAL)) continue;
      u.stored += o.size;
      const key = userKeyOf(o.name);
      if (key === null) continue;
      if (key !== o.name) {
        batch.push(o.name);
        if (batch.length >= headsPerSecond) await sizeDeltas();
      } else {
        u.objects++;
        u.logical += o.size;
      }
    }
    if (batch.length > 0 && !this.closed) await sizeDeltas();
    return this.closed ? null : u;
  }

  // ---- buckets ----------------------------------------------------------

  async listBuckets(): Promise<BucketInfo[]> {
    const all = await this.store.listBuckets();
    const created = new Map((all ?? []).map((b) => [b.name, b.created]));
    const out: BucketInfo[] = [];
    for (const [name, backend] of this.map) {
      // The proxy's region: a CLI bucket has no bucket record to say otherwise.
      if (all ? created.has(backend) : await this.store.headBucket(backend)) out.push({ name, created: created.get(backend) ?? new Date(0), location: '' });
    }
    return out;
  }

  async headBucket(bucket: string): Promise<BucketInfo | null> {
    return (await this.store.headBucket(this.backend(bucket))) ? { name: bucket, created: new Date(0), location: '' } : null;
  }

  async createBucket(bucket: string): Promise<void> {
    try {
      await this.store.createBucket(this.backend(bucket));
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new S3Error('BucketAlreadyOwnedByYou', undefined, { fields: { BucketName: bucket } });
      throw err;
    }
  }

  /** Empty of user objects: the CLI's leftovers (references, .deltaglider/) go with it. */
  async deleteBucket(bucket: string): Promise<void> {
    const b = this.backend(bucket);
    const rest: string[] = [];
    for await (const o of this.store.list(b, { prefix: '' })) {
      if (userKeyOf(o.name) !== null) throw new S3Error('BucketNotEmpty', undefined, { fields: { BucketName: bucket } });
      rest.push(o.name);
    }
    await mapLimit(rest, 16, (n) => this.store.delete(b, n));
    await this.store.deleteBucket(b);
  }

  // ---- objects ----------------------------------------------------------

  /**
   * The visible object under a key: K (direct, or a plain S3 object) or
   * K.delta. While a write changes an object's kind both exist for a moment;
   * the newer one (dg-created-at, then Last-Modified) is the object.
   */
  async find(bucket: string, key: string, names?: string[]): Promise<ObjectMeta | null> {
    if (userKeyOf(key) !== key) return null;
    const b = this.backend(bucket);
    const want = names ?? [key, deltaName(key)];
    const heads = await Promise.all(want.map((n) => this.store.head(b, n)));
    const found = heads.filter((h): h is PlainObject => h !== null);
    if (found.length === 0) return null;
    const when = (o: PlainObject) => Date.parse(parseCreated(field(o.metadata, 'created_at'), o.lastModified));
    found.sort((x, y) => when(y) - when(x) || y.lastModified.getTime() - x.lastModified.getTime());
    const o = found[0];
    return describe(key, o, o.key.endsWith(DELTA_SUFFIX) && o.key !== key ? 'delta' : 'direct', bucket);
  }

  open(bucket: string, meta: ObjectMeta, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
    return openCli({ store: this.store, cache: this.cache, codec: this.d.codec, tmpDir: this.d.opts.tmpDir }, this.backend(bucket), meta, range, signal);
  }

  async put(input: PutInput): Promise<ObjectMeta> {
    // An unreadable current object is overwritten like a missing one; a
    // backend failure is not (If-None-Match must not overwrite on a 503).
    const current = await this.find(input.bucket, input.key).catch((err) => {
      if (err instanceof UnsupportedFormatError) return null;
      throw err;
    });
    const space = `${input.bucket}\0${deltaspaceOf(input.key)}`;
    const useSpace = async <T>(fn: () => Promise<T>): Promise<T> => {
      const release = await this.spaceLocks.read(space);
      try {
        return await fn();
      } finally {
        release();
      }
    };
    const r = await putCli({ ...this.d, store: this.store, cache: this.cache }, input.bucket, this.backend(input.bucket), input, current, useSpace);
    if (r.droppedDelta) await this.collectReference(input.bucket, deltaspaceOf(input.key));
    return r.meta;
  }

  /** Removes both stored names of a key; the reference goes when no delta is left. */
  async remove(bucket: string, key: string): Promise<boolean> {
    if (userKeyOf(key) !== key) return false;
    const b = this.backend(bucket);
    const [direct, delta] = await Promise.all([this.store.head(b, key), this.store.head(b, deltaName(key))]);
    if (direct) await this.store.delete(b, key);
    if (delta) {
      await this.store.delete(b, deltaName(key));
      await this.collectReference(bucket, deltaspaceOf(key));
    }
    return !!(direct || delta);
  }

  /** As the CLI does: the reference stays while any delta of its deltaspace is left. */
  private async collectReference(bucket: string, space: string): Promise<void> {
    const b = this.backend(bucket);
    const release = await this.spaceLocks.write(`${bucket}\0${space}`);
    try {
      for await (const o of this.store.list(b, { prefix: spacePrefix(space), shallow: true })) {
        if (o.name.endsWith(DELTA_SUFFIX)) return;
      }
      await this.store.delete(b, referenceName(space));
    } catch (err) {
      this.d.log.warn({ bucket, space, err }, 'CLI layout: reference clean-up failed');
    } finally {
      release();
    }
  }

  async list(input: ListInput): Promise<ListResult> {
    const { names, page } = await listCliPage(this.store, this.backend(input.bucket), input);
    const metas = await mapLimit(page.keys, 16, async (key) => {
      try {
        return await this.find(input.bucket, key, names.get(key));
      } catch (err) {
        // Unreadable records are left out of the listing; GET and HEAD say why.
        this.d.log.warn({ bucket: input.bucket, key, err }, 'CLI layout: object left out of a listing');
        return null;
      }
    });
    return { objects: metas.filter((m): m is ObjectMeta => m !== null), commonPrefixes: page.commonPrefixes, truncated: page.truncated, last: page.last };
  }
}
