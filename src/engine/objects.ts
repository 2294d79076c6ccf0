import { LRUCache } from 'lru-cache';
import * as fsp from 'node:fs/promises';
import { AlreadyExistsError, BusyError, PreconditionError, S3Error } from '../errors.js';
import type { Logger } from '../log.js';
import type { Backend } from '../storage/backend.js';
import { INLINE_BLOCKS, BLOCK_SIZE } from './blocks.js';
import type { Codec } from './codec.js';
import type { Compactor } from './compaction.js';
import type { GzipKind } from './gzip-form.js';
import { format1Sidecar, newestFormat1, readFormat1, removeFormat1, type Format1Version } from './format1.js';
import { namesOf, type Collector } from './gc.js';
import { dataBlob, deltaspaceOf, metaBlob, newBlobId, objectBlob, objectSidecar } from './keys.js';
import { KeyedRwLock } from '../locks.js';
import { encodeMeta, parseObjectMeta, seededReference, type BlockDigests, type ObjectMeta, type StoredForm } from './meta.js';
import type { References, ReferenceVersion } from './references.js';
import type { FileRouter } from './router.js';
import { tempPath, type Spooled } from './spool.js';
import type { EngineOptions, PreEncode, PutInput } from './types.js';
import { objectUsage, referenceUsage, versionsUsage, type Usage } from './usage.js';
import { largestSourceSegment } from './vcdiff.js';

// Writing and removing objects in storage format 2.
//
// Every write of bytes goes to a blob name never used before; the object's
// sidecar `K.object.meta` is the one commit point and names those blobs. It
// is written conditionally on the version it replaces (If-Match, or
// If-None-Match for a new key), so two writers of one key, in this instance
// or in two sharing a backend, cannot both commit over the same version: the
// loser writes again on top of the winner. Replaced blobs are retired (./gc.ts).

export interface Resolved {
  /** The format 2 sidecar, with its etag; meta null when it cannot be read. */
  v2?: { etag: string; meta: ObjectMeta | null; error?: Error };
  /** The visible format 1 version, when there is no format 2 sidecar. */
  v1?: Format1Version;
  /** Every format 1 sidecar of the key (write paths remove them all). */
  v1all: Format1Version[];
}

export interface ObjectsDeps {
  /** Told of every change in what a bucket holds (./usage-tracker.ts). */
  usage?: (bucket: string, before: Usage | null, after: Usage | null) => void;
  backend: Backend;
  refs: References;
  codec: Codec;
  router: FileRouter;
  gc: Collector;
  /** The gzip stored form, tried before a plain delta for gzip uploads. */
  gzip?: GzipKind;
  /** Background compaction (./compaction.ts), when configured. */
  compactor?: Compactor;
  opts: EngineOptions;
  log: Logger;
}

type Written = { form: StoredForm; ref?: ReferenceVersion };

const isConflict = (err: unknown) => err instanceof PreconditionError || err instanceof AlreadyExistsError;

export class Objects {
  /** Reference use (read) against reference collection (write), per deltaspace (also ./compaction.ts). */
  readonly spaceLocks = new KeyedRwLock();
  /** Parsed sidecars by (bucket, key, etag), for backends with quickEtag (see resolve). */
  private readonly parsed = new LRUCache<string, ObjectMeta>({ maxSize: 16 << 20 });

  constructor(private readonly d: ObjectsDeps) {}

  /**
   * Etags that peeks found current, with the backend generation before their
   * stat: one still current and younger than the caller's `trustMs` stands
   * for a stat (see peek). The parsed sidecar itself stays in `parsed` only,
   * so that its bound holds.
   */
  private readonly checked = new LRUCache<string, { etag: string; generation: number; at: number }>({ max: 16384 });

  /**
   * The format 2 version of a key as resolve() would find it from memory
   * alone: its sidecar parsed before and unchanged on disk since (one stat),
   * on a backend with cheap etags. Undefined when resolve() would read.
   *
   * With `trustMs`, on a backend with generation(), a version checked by a
   * stat less than `trustMs` ago is taken without one when nothing was
   * changed through the backend since: the backend is then the only writer,
   * and a change made through it moves its generation before it shows on
   * disk. What is not seen is a change made beside the proxy (a file
   * restored by hand), for at most `trustMs`.
   */
  peek(bucket: string, key: string, trustMs = 0): { etag: string; meta: ObjectMeta } | undefined {
    const backend = this.d.backend;
    if (!backend.quickEtag) return undefined;
    const id = `${bucket}\0${key}`;
    const generation = backend.generation?.();
    if (trustMs > 0 && generation !== undefined) {
      const seen = this.checked.get(id);
      if (seen !== undefined && seen.generation === generation && Date.now() - seen.at < trustMs) {
        const meta = this.parsed.get(`${id}\0${seen.etag}`);
        if (meta) return { etag: seen.etag, meta };
      }
    }
    const quick = backend.quickEtag(bucket, objectSidecar(key));
    const meta = quick === null ? undefined : this.parsed.get(`${id}\0${quick}`);
    if (!meta) {
      this.checked.delete(id);
      return undefined;
    }
    if (generation !== undefined) this.checked.set(id, { etag: quick!, generation, at: Date.now() });
    return { etag: quick!, meta };
  }

  /**
   * Reads a key's sidecars: the format 2 one, and the format 1 ones only when
   * there is none (reads) or always (`all`, for the write paths that must
   * remove every older version).
   */
  async resolve(bucket: string, key: string, all = false): Promise<Resolved> {
    // Reads on a backend with cheap etags: the parsed sidecar of the version
    // on disk now, if it was read before (a stat instead of open, read,
    // close and JSON.parse: the largest part of a small HEAD/GET of ours in
    // the profile). Writers (`all`) always read.
    const hit = all ? undefined : this.peek(bucket, key);
    if (hit) return { v2: hit, v1all: [] };
    const [blob, v1all] = await Promise.all([
      this.d.backend.readSmall(bucket, objectSidecar(key)),
      all ? readFormat1(this.d.backend, bucket, key) : Promise.resolve(null),
    ]);
    if (blob) {
      try {
        const meta = parseObjectMeta(blob.body);
        if (this.d.backend.quickEtag) this.parsed.set(`${bucket}\0${key}\0${blob.etag}`, freezeMeta(meta), { size: blob.body.length });
        return { v2: { etag: blob.etag, meta }, v1all: v1all ?? [] };
      } catch (err) {
        this.d.log.error({ bucket, key, err }, 'unreadable object sidecar');
        return { v2: { etag: blob.etag, meta: null, error: err as Error }, v1all: v1all ?? [] };
      }
    }
    const v1 = v1all ?? (await readFormat1(this.d.backend, bucket, key));
    return { v1: newestFormat1(v1), v1all: v1 };
  }

  async put(input: PutInput): Promise<ObjectMeta> {
    const { bucket, key, body } = input;
    const space = deltaspaceOf(key);
    const eligible = body.size > 0 && body.size <= this.d.opts.maxDeltaObjectSize && this.d.router.isDeltaEligible(key) && this.d.opts.writeFormat !== 1;
    // Background compaction: acknowledged once durable as a direct blob,
    // encoded later (./compaction.ts); inline again when its backlog is full.
    const background = eligible && !!this.d.compactor?.accepts();
    const releaseSpace = eligible && !background ? await this.spaceLocks.read(`${bucket}\0${space}`) : undefined;
    let collect = false;
    try {
      for (let attempt = 1; ; attempt++) {
        const cur = await this.resolve(bucket, key, true);
        input.precondition?.(cur.v2 ? cur.v2.meta : (cur.v1?.meta ?? null));
        if (this.d.opts.writeFormat === 1) return await this.putFormat1(input, cur);
        const id = newBlobId();
        let w: Written | null = null;
        if (eligible && !background) {
          const r = await this.storeDelta(bucket, key, space, body, id, attempt === 1 ? input.pre : undefined);
          w = r.written;
          // A reference seeded by an upload that then went direct serves no one.
          collect ||= r.seeded && !w;
        }
        w ??= { form: await this.storeDirect(bucket, key, body, id) };
        const blocks = await this.storeBlocks(bucket, key, id, body.blocks);
        const ours = [w.form.blob as string, ...(blocks.blob ? [blocks.blob] : [])];
        let meta = this.describe(input, [w.form], blocks);
        if (background) {
          meta.pending = { compact: id };
          await this.d.compactor!.mark(bucket, key, id);
        }
        let etag: string;
        try {
          etag = await this.d.backend.putBytes(bucket, objectSidecar(key), encodeMeta(meta), cur.v2 ? { ifMatch: cur.v2.etag } : { ifNoneMatch: true });
        } catch (err) {
          await this.discard(bucket, ours);
          if (isConflict(err) && attempt < 5) continue;
          if (isConflict(err)) throw new S3Error('ConditionalRequestConflict', undefined, { cause: err });
          throw err;
        }
        if (w.ref && !(await this.d.refs.confirm(bucket, space, w.ref))) {
          // Another instance is collecting the reference: keep the bytes safe
          // as a direct object instead (docs/storage-format.md, "Several instances").
          this.d.log.warn({ bucket, key }, 'reference collected concurrently; storing direct');
          const direct = await this.storeDirect(bucket, key, body, newBlobId());
          meta = this.describe(input, [direct], blocks);
          await this.d.backend.putBytes(bucket, objectSidecar(key), encodeMeta(meta), { ifMatch: etag });
          this.d.gc.retire(bucket, [w.form.blob as string]);
          collect = true;
        }
        if (this.d.backend.shared && !(await this.d.backend.headBucket(bucket))) {
          // DeleteBucket through another instance removed the bucket around
          // this commit: take the write back rather than acknowledge an
          // object in a bucket that is gone (Backend.deleteBucket).
          await this.d.backend.delete(bucket, objectSidecar(key)).catch(() => {});
          await this.discard(bucket, ours);
          throw new S3Error('NoSuchBucket', undefined, { fields: { BucketName: bucket } });
        }
        collect ||= this.retireReplaced(bucket, key, cur);
        for (const v of cur.v1all) await removeFormat1(this.d.backend, bucket, key, v, (n) => this.d.gc.retire(bucket, n));
        this.d.usage?.(bucket, usageOf(cur), objectUsage(meta));
        if (background) this.d.compactor!.enqueue(bucket, key);
        return meta;
      }
    } finally {
      releaseSpace?.();
      if (collect) await this.collectReference(bucket, space);
    }
  }

  /** Retires the blobs of a replaced format 2 version; true if it held a delta. */
  private retireReplaced(bucket: string, key: string, cur: Resolved): boolean {
    void key;
    const old = cur.v2?.meta;
    let delta = cur.v1all.some((v) => v.kind === 'delta');
    if (old) {
      this.d.gc.retire(bucket, [...namesOf(old)]);
      // delta and gzip forms both use the deltaspace's reference
      delta ||= old.stored.some((f) => f.kind === 'delta' || f.kind === 'gzip');
    }
    return delta;
  }

  /** Blobs written for a commit that did not happen: no one can name them. */
  private async discard(bucket: string, names: string[]): Promise<void> {
    for (const n of names) await this.d.backend.delete(bucket, n).catch(() => {});
  }

  private describe(input: PutInput, stored: StoredForm[], blocks: BlockDigests): ObjectMeta {
    return {
      format: 2,
      tool: this.d.opts.toolVersion,
      key: input.key,
      size: input.body.size,
      sha256: input.body.sha256,
      md5: input.body.md5,
      etag: input.etag ?? input.body.md5,
      created: new Date().toISOString(),
      content_type: input.contentType || 'application/octet-stream',
      headers: input.headers,
      user_metadata: input.userMetadata,
      checksums: input.checksums,
      ...(input.parts ? { parts: input.parts } : {}),
      ...(input.partSizes ? { part_sizes: input.partSizes } : {}),
      stored,
      blocks,
      kind: stored[0].kind,
      stored_size: stored[0].size ?? 0,
      ...(seededReference(input.body.sha256, stored) ? { seeded_reference: true } : {}),
    };
  }

  private async storeDirect(bucket: string, key: string, body: Spooled, id: string): Promise<StoredForm> {
    const blob = objectBlob(key, 'direct', id);
    const etag = await this.d.backend.putFile(bucket, blob, body.path);
    return { kind: 'direct', blob, size: body.size, etag };
  }

  private async storeBlocks(bucket: string, key: string, id: string, digests: Buffer): Promise<BlockDigests> {
    const base = { size: BLOCK_SIZE, alg: 'crc32' as const };
    if (digests.length / 4 <= INLINE_BLOCKS) return { ...base, inline: digests.toString('base64') };
    const blob = objectBlob(key, 'blocks', id);
    const etag = await this.d.backend.putBytes(bucket, blob, digests);
    return { ...base, blob, blob_etag: etag };
  }

  /**
   * Stores a delta when it is worth it (max_delta_ratio); `written` null
   * means "store direct". `background`: a compaction (./compaction.ts), whose
   * encoder runs at the lowest CPU priority.
   */
  async storeDelta(bucket: string, key: string, space: string, body: Spooled, id: string, pre?: PreEncode, run: { signal?: AbortSignal; background?: boolean } = {}): Promise<{ written: Written | null; seeded: boolean; busy?: boolean }> {
    const { ref, created: seeded } = await this.d.refs.ensure(bucket, space, body, key);
    if (seeded) this.d.usage?.(bucket, null, referenceUsage(ref));
    if (!seeded && this.d.gzip) {
      // A gzip upload whose decompressed bytes reproduce: a delta of those (./gzip-form.ts).
      const refRef = { blob: ref.blob, sha256: ref.sha256, size: ref.size, ...(ref.blob_etag ? { etag: ref.blob_etag } : {}) };
      const form = await this.d.gzip.store(bucket, key, body, refRef, id, run.signal).catch((err: unknown) => {
        this.d.log.warn({ bucket, key, err }, 'gzip form failed; trying a plain delta');
        return null;
      });
      // (An overlapped plain encode, if any, is cancelled by the caller.)
      if (form) return { written: { form, ref }, seeded };
    }
    const same = pre && pre.refSha === ref.sha256;
    // Only an encoder that saw every byte of this very body can stand for it
    // (and only such a one is waited for: one the tee dropped may not be done).
    const preFile = same && body.teed ? await pre.finish() : null;
    // An encoder stopped at the limit saw a prefix of this body (the tee
    // feeds it in order), and its delta had already reached the size at
    // which the whole one is dropped.
    const stopped = same ? pre.stopped() : null;
    if (stopped !== null && stopped / body.size >= this.d.opts.maxDeltaRatio) return { written: null, seeded };
    this.d.log.debug?.({ bucket, key, overlapped: !!preFile }, 'delta encode');
    let out = preFile;
    let handle;
    try {
      if (!out) {
        handle = await this.d.refs.open(bucket, ref);
        out = tempPath(this.d.opts.tmpDir, 'delta');
        try {
          // Stopped at the limit: the delta is not worth it (Codec.encode).
          const complete = await this.d.codec.encode(handle.path, handle.size, body.path, out, run.signal, { nice: run.background, limit: this.d.opts.maxDeltaRatio * body.size });
          if (!complete) return { written: null, seeded };
        } catch (err) {
          // The codec pool is full: the body has arrived already, so keep it
          // as a direct object rather than answer SlowDown after the upload.
          if (!(err instanceof BusyError)) throw err;
          this.d.log.warn({ bucket, key }, 'codec pool full: stored direct');
          return { written: null, seeded, busy: true };
        }
      }
      const { size } = await fsp.stat(out);
      if (size / body.size >= this.d.opts.maxDeltaRatio) return { written: null, seeded };
      const blob = objectBlob(key, 'delta', id);
      const etag = await this.d.backend.putFile(bucket, blob, out);
      // Recorded so a reader can size xdelta3's source buffer before it has the delta (./vcdiff.ts).
      const segment = await largestSourceSegment(out);
      const form: StoredForm = {
        kind: 'delta',
        blob,
        size,
        etag,
        codec: 'xdelta3',
        reference: { blob: ref.blob, sha256: ref.sha256, size: ref.size, ...(ref.blob_etag ? { etag: ref.blob_etag } : {}) },
        ...(segment === null ? {} : { max_source_segment: segment }),
      };
      return { written: { form, ref }, seeded };
    } finally {
      handle?.release();
      if (out && out !== preFile) await fsp.rm(out, { force: true });
    }
  }

  /**
   * Rolling-upgrade writes (`storage_format = 1`): a direct object in format
   * 1, which the first release reads; the key's format 2 sidecar, if any,
   * goes after the commit so that the new bytes are what every reader sees.
   */
  private async putFormat1(input: PutInput, cur: Resolved): Promise<ObjectMeta> {
    const { bucket, key, body } = input;
    const dataEtag = await this.d.backend.putFile(bucket, dataBlob(key, 'direct'), body.path);
    const meta = this.describe(input, [{ kind: 'direct', blob: dataBlob(key, 'direct'), size: body.size, etag: dataEtag }], { size: BLOCK_SIZE, alg: 'crc32' });
    delete meta.blocks;
    meta.format = 1;
    const prev = cur.v1all.find((v) => v.kind === 'direct');
    await this.d.backend.putBytes(bucket, metaBlob(key, 'direct'), format1Sidecar(meta, dataEtag), prev ? { ifMatch: prev.etag } : { ifNoneMatch: true });
    if (cur.v2) {
      await this.d.backend.delete(bucket, objectSidecar(key), { ifMatch: cur.v2.etag }).catch((err) => {
        if (!(err instanceof PreconditionError)) throw err;
      });
      this.retireReplaced(bucket, key, { ...cur, v1all: [] });
    }
    const delta = cur.v1all.find((v) => v.kind === 'delta');
    if (delta) await removeFormat1(this.d.backend, bucket, key, delta, (n) => this.d.gc.retire(bucket, n));
    return meta;
  }

  /** Removes every version of a key; true when one was visible. */
  async remove(bucket: string, key: string): Promise<boolean> {
    const cur = await this.resolve(bucket, key, true);
    let collect = false;
    if (cur.v2) {
      try {
        await this.d.backend.delete(bucket, objectSidecar(key), { ifMatch: cur.v2.etag });
        collect = this.retireReplaced(bucket, key, { ...cur, v1all: [] });
      } catch (err) {
        // Replaced meanwhile (another instance): the newer write stands, as
        // if it came after this delete.
        if (!(err instanceof PreconditionError)) throw err;
      }
    }
    for (const v of cur.v1all) {
      await removeFormat1(this.d.backend, bucket, key, v, (n) => this.d.gc.retire(bucket, n));
      collect ||= v.kind === 'delta';
    }
    this.d.usage?.(bucket, usageOf(cur), null);
    if (collect) await this.collectReference(bucket, deltaspaceOf(key));
    return !!(cur.v2?.meta || cur.v1?.meta);
  }

  async collectReference(bucket: string, space: string): Promise<void> {
    const release = await this.spaceLocks.write(`${bucket}\0${space}`);
    try {
      for (const ref of await this.d.refs.collectIfUnused(bucket, space)) this.d.usage?.(bucket, referenceUsage(ref), null);
    } catch (err) {
      // Not fatal: an unused reference only costs space; the next delete in
      // the deltaspace, or the sweep, tries again.
      this.d.log.warn({ bucket, space, err }, 'reference clean-up failed');
    } finally {
      release();
    }
  }
}

/** What a key's stored versions cost (both formats), or null when it has none. */
function usageOf(cur: Resolved): Usage | null {
  const metas = [cur.v2?.meta ?? undefined, ...cur.v1all.map((v) => v.meta ?? undefined)];
  return versionsUsage(metas);
}

/** Frozen all the way down: a parsed sidecar shared between requests must not be changed by one of them. */
function freezeMeta<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) freezeMeta(x);
  }
  return v;
}
