import { AlreadyExistsError, NotFoundError, PreconditionError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Backend } from '../storage/backend.js';
import { keyOfMetaBlob, newBlobId, parseBlobName, referenceBlob, referenceBlobV2, referenceRecord, spacePrefix, META_SUFFIX } from './keys.js';
import { encodeMeta, parseReferenceMeta, type ReferenceMeta, type ReferenceRef } from './meta.js';
import type { RefHandle, ReferenceCache } from './refcache.js';
import type { Spooled } from './spool.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A reference record with the backend etag it was read at. */
export type ReferenceVersion = ReferenceMeta & { etag: string };

/** Removes blobs once no reader can still be starting on them (./gc.ts). */
export interface Retirer {
  retire(bucket: string, names: string[]): void;
}

/**
 * The reference of each deltaspace (format 2). The bytes live in an
 * immutable blob `reference.<id>.bin`; the record `reference.meta` names the
 * current one. Seeding writes a new blob, then creates the record with a
 * create-only write, so concurrent first uploads (in this instance or in
 * another sharing the backend) agree on one. A delta's sidecar names the
 * reference blob it applies to, with its SHA-256, so a reader never needs the
 * record. The reference is removed when no delta of its deltaspace is left.
 */
export class References {
  constructor(
    private readonly backend: Backend,
    private readonly cache: ReferenceCache,
    private readonly tool: string,
    private readonly log: Logger,
    private readonly gc: Retirer,
  ) {}

  async read(bucket: string, space: string): Promise<ReferenceVersion | null> {
    const blob = await this.backend.readSmall(bucket, referenceRecord(space));
    if (!blob) return null;
    try {
      return { ...parseReferenceMeta(blob.body), etag: blob.etag };
    } catch (err) {
      this.log.error({ bucket, space, err }, 'unreadable reference record');
      return null;
    }
  }

  /**
   * The deltaspace's reference, seeding it from `body` when there is none;
   * `created` tells whether this call seeded it.
   */
  async ensure(bucket: string, space: string, body: Spooled, key: string): Promise<{ ref: ReferenceVersion; created: boolean }> {
    const existing = await this.read(bucket, space);
    if (existing) return { ref: existing, created: false };
    return this.seed(bucket, space, body, key);
  }

  private async seed(bucket: string, space: string, body: Spooled, key: string): Promise<{ ref: ReferenceVersion; created: boolean }> {
    const name = referenceBlobV2(space, newBlobId());
    const blobEtag = await this.backend.putFile(bucket, name, body.path, { ifNoneMatch: true });
    const meta: ReferenceMeta = {
      format: 2,
      tool: this.tool,
      kind: 'reference',
      blob: name,
      blob_etag: blobEtag,
      size: body.size,
      sha256: body.sha256,
      created: new Date().toISOString(),
      source_key: key,
    };
    try {
      const etag = await this.backend.putBytes(bucket, referenceRecord(space), encodeMeta(meta), { ifNoneMatch: true });
      await this.cache.adopt(bucket, name, meta.sha256, meta.size, body.path).catch(() => {});
      return { ref: { ...meta, etag }, created: true };
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      // Another writer seeded first: nobody names our blob.
      await this.backend.delete(bucket, name).catch(() => {});
      for (let i = 0; i < 40; i++) {
        const m = await this.read(bucket, space);
        if (m) return { ref: m, created: false };
        await sleep(50);
      }
      throw err;
    }
  }

  /** A local file holding the reference `ref` (verified by SHA-256 unless read in place). */
  open(bucket: string, ref: ReferenceRef, signal?: AbortSignal): Promise<RefHandle> {
    return this.cache.acquire(bucket, ref.blob, ref.sha256, signal);
  }

  /**
   * After a delta's sidecar is committed: proves the reference it used is
   * still current by rewriting its record on condition of the version read
   * before encoding (same bytes, so the same etag on S3). A collector deletes
   * the record before it looks for deltas, so either it sees this delta and
   * keeps the reference, or this write fails and the caller stores the
   * object direct. Backends used by one instance rely on the locks instead.
   */
  async confirm(bucket: string, space: string, ref: ReferenceVersion): Promise<boolean> {
    if (!this.backend.shared) return true;
    try {
      const { etag: _e, ...plain } = ref;
      void _e;
      await this.backend.putBytes(bucket, referenceRecord(space), encodeMeta(plain), { ifMatch: ref.etag });
      return true;
    } catch (err) {
      if (err instanceof PreconditionError || err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Removes the deltaspace's reference(s) when no delta needs them; returns those removed. */
  async collectIfUnused(bucket: string, space: string): Promise<ReferenceVersion[]> {
    const removed: ReferenceVersion[] = [];
    const { v1, v2 } = await this.deltasIn(bucket, space);
    if (!v1) {
      const old = await this.collectFormat1(bucket, space);
      if (old) removed.push(old);
    }
    const ref = await this.read(bucket, space);
    if (!ref || v2) return removed;
    if (this.backend.shared) {
      // Hide the record first (see confirm), then look again for deltas.
      try {
        await this.backend.delete(bucket, referenceRecord(space), { ifMatch: ref.etag });
      } catch (err) {
        if (err instanceof PreconditionError) return removed; // in use or replaced meanwhile
        throw err;
      }
      if ((await this.deltasIn(bucket, space)).v2) {
        const { etag: _e, ...plain } = ref;
        void _e;
        await this.backend.putBytes(bucket, referenceRecord(space), encodeMeta(plain), { ifNoneMatch: true }).catch((err) => {
          if (!(err instanceof AlreadyExistsError)) throw err;
        });
        return removed;
      }
    } else {
      await this.backend.delete(bucket, referenceRecord(space));
    }
    this.gc.retire(bucket, [ref.blob]);
    removed.push(ref);
    return removed;
  }

  /**
   * Whether the deltaspace holds deltas, by name: format 1 `.delta.meta`
   * sidecars, and format 2 `.delta.bin` blobs (committed or not yet swept:
   * erring on the side of keeping the reference).
   */
  private async deltasIn(bucket: string, space: string): Promise<{ v1: boolean; v2: boolean }> {
    let v1 = false;
    let v2 = false;
    for await (const b of this.backend.list(bucket, { prefix: spacePrefix(space), shallow: true })) {
      if (keyOfMetaBlob(b.name)?.kind === 'delta') v1 = true;
      const p = parseBlobName(b.name);
      if (p && p.role === 'delta') v2 = true;
      if (v1 && v2) break;
    }
    return { v1, v2 };
  }

  // ---- format 1 (read, and collected when unused) ----------------------

  /** The format 1 reference (`reference.bin` and its sidecar), if any. */
  async readFormat1(bucket: string, space: string): Promise<ReferenceVersion | null> {
    const blob = await this.backend.readSmall(bucket, referenceBlob(space) + META_SUFFIX);
    if (!blob) return null;
    try {
      return { ...parseReferenceMeta(blob.body, referenceBlob(space)), etag: blob.etag };
    } catch (err) {
      this.log.error({ bucket, space, err }, 'unreadable format 1 reference sidecar');
      return null;
    }
  }

  private async collectFormat1(bucket: string, space: string): Promise<ReferenceVersion | null> {
    const ref = await this.readFormat1(bucket, space);
    if (!ref) return null;
    try {
      await this.backend.delete(bucket, referenceBlob(space) + META_SUFFIX, { ifMatch: ref.etag });
    } catch (err) {
      if (err instanceof PreconditionError) return null;
      throw err;
    }
    this.gc.retire(bucket, [referenceBlob(space)]);
    return ref;
  }
}
