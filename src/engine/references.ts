import { createHash } from 'node:crypto';
import { AlreadyExistsError, NotFoundError } from '../errors.js';
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
export class References {
  constructor(
    private readonly backend: Backend,
    private readonly cache: ReferenceCache,
    private readonly tool: string,
    private readonly log: Logger,
  ) {}

  async read(bucket: string, space: string): Promise<ReferenceMeta | null> {
    try {
      return parseReferenceMeta(await this.backend.getBytes(bucket, referenceBlob(space) + META_SUFFIX));
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      if (err instanceof SyntaxError || (err as Error).message?.includes('malformed')) return null;
      throw err;
    }
  }

  /** The deltaspace's reference, seeding it from `body` when there is none. */
  async ensure(bucket: string, space: string, body: Spooled, key: string): Promise<ReferenceMeta> {
    const existing = await this.read(bucket, space);
    if (existing) return existing;
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
      await this.backend.putFile(bucket, blob, body.path, { ifNoneMatch: true });
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      // Another writer created it first: wait for its sidecar.
      for (let i = 0; i < 40; i++) {
        const m = await this.read(bucket, space);
        if (m) return m;
        await sleep(50);
      }
      // Data without sidecar: a writer died between the two. The reference
      // bytes are immutable, so its sidecar can be rebuilt from them.
      return this.rebuild(bucket, space);
    }
    await this.backend.putBytes(bucket, blob + META_SUFFIX, encodeMeta(meta));
    await this.cache.adopt(bucket, blob, meta.sha256, meta.size, body.path).catch(() => {});
    return meta;
  }

  private async rebuild(bucket: string, space: string): Promise<ReferenceMeta> {
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
    await this.backend.putBytes(bucket, blob + META_SUFFIX, encodeMeta(meta));
    return meta;
  }

  open(bucket: string, space: string, ref: ReferenceMeta, signal?: AbortSignal): Promise<RefHandle> {
    return this.cache.acquire(bucket, referenceBlob(space), ref.sha256, ref.size, signal);
  }

  async openBySha(bucket: string, space: string, sha: string, signal?: AbortSignal): Promise<RefHandle> {
    const ref = await this.read(bucket, space);
    if (!ref) throw new Error(`${bucket}/${referenceBlob(space)}: reference missing`);
    if (ref.sha256 !== sha) throw new Error(`${bucket}/${referenceBlob(space)}: reference is ${ref.sha256}, delta needs ${sha}`);
    return this.open(bucket, space, ref, signal);
  }

  /** Removes the reference when no delta in its deltaspace needs it. */
  async collectIfUnused(bucket: string, space: string): Promise<void> {
    const prefix = spacePrefix(space);
    let any = false;
    for await (const b of this.backend.list(bucket, { prefix, shallow: true })) {
      if (keyOfMetaBlob(b.name)?.kind === 'delta') {
        any = true;
        break;
      }
    }
    if (any) return;
    const blob = referenceBlob(space);
    await this.backend.delete(bucket, blob + META_SUFFIX);
    await this.backend.delete(bucket, blob);
  }
}
