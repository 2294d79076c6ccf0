import { createHash } from 'node:crypto';
import { AlreadyExistsError, NotFoundError, PreconditionError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Backend } from '../storage/backend.js';
import { keyOfMetaBlob, referenceBlob, spacePrefix, META_SUFFIX } from './keys.js';
import { encodeMeta, parseReferenceMeta, type ReferenceMeta } from './meta.js';
import type { RefHandle, ReferenceCache } from './refcache.js';
import type { Spooled } from './spool.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The reference of each deltaspace: created once, from the first eligible
 * upload, with a create-only write so that concurrent first uploads (in this
 * instance or another sharing the backend) agree on one; removed when no delta
 * of its deltaspace is left.
 */
/** A reference sidecar with the backend etag it was read at. */
export type ReferenceVersion = ReferenceMeta & { etag: string };

export class References {
  constructor(
    private readonly backend: Backend,
    private readonly cache: ReferenceCache,
    private readonly tool: string,
    private readonly log: Logger,
  ) {}

  private metaName(space: string): string {
    return referenceBlob(space) + META_SUFFIX;
  }

  async read(bucket: string, space: string): Promise<ReferenceVersion | null> {
    const blob = await this.backend.readSmall(bucket, this.metaName(space));
    if (!blob) return null;
    try {
      return { ...parseReferenceMeta(blob.body), etag: blob.etag };
    } catch (err) {
      this.log.error({ bucket, space, err }, 'unreadable reference sidecar');
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

  /** `created`: this call wrote the reference's bytes (a concurrent first upload may have won). */
  private async seed(bucket: string, space: string, body: Spooled, key: string): Promise<{ ref: ReferenceVersion; created: boolean }> {
    const blob = referenceBlob(space);
    const meta: ReferenceMeta = {
      format: 1,
      tool: this.tool,
      kind: 'reference',
      size: body.size,
      sha256: body.sha256,
      created: new Date().toISOString(),
      source_key: key,
    };
    try {
      // Create-only: of concurrent first uploads, in this instance or in
      // another sharing the backend, exactly one seeds the reference.
      await this.backend.putFile(bucket, blob, body.path, { ifNoneMatch: true });
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      // Another writer created it first: wait for its sidecar.
      for (let i = 0; i < 40; i++) {
        const m = await this.read(bucket, space);
        if (m) return { ref: m, created: false };
        await sleep(50);
      }
      // Data without sidecar: a writer died between the two. The reference
      // bytes are immutable, so its sidecar can be rebuilt from them.
      return { ref: await this.rebuild(bucket, space), created: false };
    }
    const etag = await this.writeMeta(bucket, space, meta, { ifNoneMatch: true }).catch(async (err) => {
      if (!(err instanceof AlreadyExistsError)) throw err;
      return null;
    });
    await this.cache.adopt(bucket, blob, meta.sha256, meta.size, body.path).catch(() => {});
    if (etag === null) return { ref: (await this.read(bucket, space)) ?? (await this.rebuild(bucket, space)), created: true };
    return { ref: { ...meta, etag }, created: true };
  }

  private writeMeta(bucket: string, space: string, meta: ReferenceMeta | ReferenceVersion, opts: { ifNoneMatch?: boolean; ifMatch?: string } = {}): Promise<string> {
    const { etag: _drop, ...plain } = meta as ReferenceVersion;
    void _drop;
    return this.backend.putBytes(bucket, this.metaName(space), encodeMeta(plain as ReferenceMeta), opts);
  }

  private async rebuild(bucket: string, space: string): Promise<ReferenceVersion> {
    const blob = referenceBlob(space);
    const { body } = await this.backend.getStream(bucket, blob);
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
    }
    const meta: ReferenceMeta = {
      format: 1,
      tool: this.tool,
      kind: 'reference',
      size,
      sha256: hash.digest('hex'),
      created: new Date().toISOString(),
      source_key: '',
    };
    this.log.warn({ bucket, space }, 'reference had no sidecar; rebuilt it');
    try {
      const etag = await this.writeMeta(bucket, space, meta, { ifNoneMatch: true });
      return { ...meta, etag };
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      const m = await this.read(bucket, space);
      if (!m) throw err;
      return m;
    }
  }

  /** A local file of the reference whose SHA-256 is `sha`. */
  open(bucket: string, space: string, sha: string, signal?: AbortSignal): Promise<RefHandle> {
    return this.cache.acquire(bucket, referenceBlob(space), sha, signal);
  }

  /**
   * After a delta's sidecar is committed: proves the reference it used is
   * still in place by rewriting its sidecar on condition of the version read
   * before encoding (same bytes, so the same etag on S3). A collector deletes
   * that sidecar before it looks for deltas, so either it sees this delta and
   * keeps the reference, or this write fails and the caller stores the
   * object direct. Backends used by one instance rely on the locks instead.
   */
  async confirm(bucket: string, space: string, ref: ReferenceVersion): Promise<boolean> {
    if (!this.backend.shared) return true;
    try {
      await this.writeMeta(bucket, space, ref, { ifMatch: ref.etag });
      return true;
    } catch (err) {
      if (err instanceof PreconditionError || err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Removes the reference when no delta in its deltaspace needs it; returns the one removed. */
  async collectIfUnused(bucket: string, space: string): Promise<ReferenceVersion | null> {
    const ref = await this.read(bucket, space);
    if (this.backend.shared) {
      if (!ref) return null;
      // Hide the reference first (see confirm), then look for deltas.
      try {
        await this.backend.delete(bucket, this.metaName(space), { ifMatch: ref.etag });
      } catch (err) {
        if (err instanceof PreconditionError) return null; // in use or replaced meanwhile
        throw err;
      }
      if (await this.hasDeltas(bucket, space)) {
        await this.writeMeta(bucket, space, ref, { ifNoneMatch: true }).catch((err) => {
          if (!(err instanceof AlreadyExistsError)) throw err;
        });
        return null;
      }
      // A writer that found data without sidecar may have rebuilt it.
      if (await this.backend.head(bucket, this.metaName(space))) return null;
      await this.backend.delete(bucket, referenceBlob(space));
      return ref;
    }
    if (await this.hasDeltas(bucket, space)) return null;
    await this.backend.delete(bucket, this.metaName(space));
    await this.backend.delete(bucket, referenceBlob(space));
    return ref;
  }

  private async hasDeltas(bucket: string, space: string): Promise<boolean> {
    for await (const b of this.backend.list(bucket, { prefix: spacePrefix(space), shallow: true })) {
      if (keyOfMetaBlob(b.name)?.kind === 'delta') return true;
    }
    return false;
  }
}
