import * as fsp from 'node:fs/promises';
import { AlreadyExistsError, S3Error } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { PlainObject, PlainStore } from '../../storage/plain.js';
import type { Codec } from '../codec.js';
import { deltaspaceOf } from '../keys.js';
import type { ObjectMeta } from '../meta.js';
import type { ReferenceCache } from '../refcache.js';
import type { FileRouter } from '../router.js';
import { tempPath } from '../spool.js';
import type { EngineOptions, PutInput } from '../types.js';
import { asciiSafe, checkCliKey, checkUserMetadata, deltaName, describe, field, MAX_METADATA, metadataSize, PROXY_META, referenceName } from './names.js';

// Writing in the CLI layout exactly as the CLI does (its `cp` to S3): the
// first delta-eligible upload of a deltaspace becomes `reference.bin` plus a
// zero-diff `K.delta`; later ones a `K.delta` against that reference; other
// files go direct under K with dg-compression=none. What the CLI has no field
// for (ETag, parts, checksums) goes into dg-proxy-* metadata; user metadata
// keeps its own names. The proxy encodes with -D, so what it writes decodes
// to the exact bytes with or without it.

export interface CliWriteDeps {
  store: PlainStore;
  cache: ReferenceCache;
  codec: Codec;
  router: FileRouter;
  opts: EngineOptions;
  log: Logger;
}

const now = () => new Date().toISOString();

function extras(input: PutInput, md5: string): Record<string, string> {
  const m: Record<string, string> = { [`${PROXY_META}md5`]: md5 };
  const etag = input.etag ?? md5;
  if (etag !== md5) m[`${PROXY_META}etag`] = etag;
  if (input.parts) m[`${PROXY_META}parts`] = String(input.parts);
  if (input.partSizes) m[`${PROXY_META}part-sizes`] = input.partSizes.join(',');
  for (const [alg, v] of Object.entries(input.checksums)) m[`${PROXY_META}checksum-${alg}`] = v;
  return m;
}

/** All metadata of one stored object, within S3's 2 KB (part sizes are dropped first). */
function fit(cli: Record<string, string>, input: PutInput): Record<string, string> {
  const all = { ...cli, ...extras(input, input.body.md5), ...input.userMetadata };
  if (metadataSize(all) > MAX_METADATA) delete all[`${PROXY_META}part-sizes`];
  if (metadataSize(all) > MAX_METADATA) {
    throw new S3Error('MetadataTooLarge', `In the DeltaGlider CLI layout the object's own records share S3's ${MAX_METADATA}-byte metadata limit with x-amz-meta-*; ${metadataSize(all)} bytes needed.`, {
      fields: { MaxSizeAllowed: String(MAX_METADATA) },
    });
  }
  return all;
}

export async function putCli(d: CliWriteDeps, bucket: string, backendBucket: string, input: PutInput, current: ObjectMeta | null, useSpace: <T>(fn: () => Promise<T>) => Promise<T>): Promise<{ meta: ObjectMeta; droppedDelta: boolean }> {
  const { key, body } = input;
  checkCliKey(key);
  checkUserMetadata(input.userMetadata);
  input.precondition?.(current);
  const name = asciiSafe(key.slice(key.lastIndexOf('/') + 1));
  const refName = referenceName(deltaspaceOf(key));
  // dg-ref-key names the reference the CLI fetches: a deltaspace S3 metadata
  // cannot carry (non-ASCII) is stored direct.
  const eligible = body.size > 0 && body.size <= d.opts.maxDeltaObjectSize && d.router.isDeltaEligible(key) && asciiSafe(refName) === refName;
  const deltaRecord = (refSha: string, deltaSize: number, seeded: boolean): Record<string, string> => ({
    'dg-tool': d.opts.toolVersion,
    'dg-original-name': name,
    'dg-file-sha256': body.sha256,
    'dg-file-size': String(body.size),
    'dg-created-at': now(),
    'dg-ref-key': refName,
    'dg-ref-sha256': refSha,
    'dg-delta-size': String(deltaSize),
    'dg-delta-cmd': `xdelta3 -e -${d.codec.opts.level} -D -s reference.bin ${name} ${name}.delta`,
    ...(seeded ? { 'dg-note': 'zero-diff (reference identical)' } : {}),
  });
  // Refused before anything is written (a reference seeded for nothing).
  if (eligible) fit(deltaRecord(body.sha256, body.size, true), input);
  const common = { contentType: input.contentType, headers: input.headers };
  const write = async (stored: string, file: string, metadata: Record<string, string>, kind: 'direct' | 'delta'): Promise<ObjectMeta> => {
    const etag = await d.store.putFile(backendBucket, stored, file, { ...common, metadata });
    const size = (await fsp.stat(file)).size;
    const o: PlainObject = { key: stored, size, lastModified: new Date(), etag, contentType: input.contentType, headers: input.headers, metadata };
    return describe(key, o, kind, bucket);
  };
  let meta: ObjectMeta | null = null;
  if (eligible) {
    meta = await useSpace(async (): Promise<ObjectMeta | null> => {
      const ref = await ensureReference(d, backendBucket, refName, input, name);
      if (!ref) {
        d.log.warn({ bucket, key, reference: refName }, 'CLI layout: reference without dg-file-sha256; storing direct');
        return null;
      }
      const out = tempPath(d.opts.tmpDir, 'cli-delta');
      let handle;
      try {
        if (ref.seeded) await d.codec.encode(body.path, body.size, body.path, out);
        else {
          handle = await d.cache.acquire(backendBucket, refName, ref.sha256);
          // Stopped at the limit: the delta is not worth it (Codec.encode).
          if (!(await d.codec.encode(handle.path, handle.size, body.path, out, undefined, { limit: d.opts.maxDeltaRatio * body.size }))) return null;
        }
        const deltaSize = (await fsp.stat(out)).size;
        // The CLI stores a poor delta anyway (with a warning); the proxy keeps
        // its max_delta_ratio rule and stores such a file direct, which the CLI reads too.
        if (!ref.seeded && deltaSize / body.size >= d.opts.maxDeltaRatio) return null;
        return await write(deltaName(key), out, fit(deltaRecord(ref.sha256, deltaSize, ref.seeded), input), 'delta');
      } finally {
        handle?.release();
        await fsp.rm(out, { force: true });
      }
    });
  }
  if (meta) {
    await d.store.delete(backendBucket, key);
    return { meta, droppedDelta: false };
  }
  const cli = {
    'dg-tool': d.opts.toolVersion,
    'dg-original-name': name,
    'dg-file-sha256': body.sha256,
    'dg-file-size': String(body.size),
    'dg-created-at': now(),
    'dg-compression': 'none',
  };
  meta = await write(key, body.path, fit(cli, input), 'direct');
  const hadDelta = current?.kind === 'delta' || (await d.store.head(backendBucket, deltaName(key))) !== null;
  if (hadDelta) await d.store.delete(backendBucket, deltaName(key));
  return { meta, droppedDelta: hadDelta };
}

/**
 * The deltaspace's reference: the existing one, or this upload's bytes as a
 * new one. Created with If-None-Match so that two first uploads agree on one
 * (the CLI itself re-reads after writing and keeps the first).
 */
async function ensureReference(d: CliWriteDeps, backendBucket: string, refName: string, input: PutInput, name: string): Promise<{ sha256: string; seeded: boolean } | null> {
  // null: something is there that is not a reference this can use.
  const existing = async () => {
    const h = await d.store.head(backendBucket, refName);
    if (!h) return undefined;
    const sha = field(h.metadata, 'file_sha256');
    return sha ? { sha256: sha, seeded: false } : null;
  };
  const found = await existing();
  if (found !== undefined) return found;
  const metadata = {
    'dg-tool': d.opts.toolVersion,
    'dg-source-name': name,
    'dg-file-sha256': input.body.sha256,
    'dg-created-at': now(),
    'dg-note': 'reference',
  };
  try {
    await d.store.putFile(backendBucket, refName, input.body.path, { metadata, ifNoneMatch: true });
    await d.cache.adopt(backendBucket, refName, input.body.sha256, input.body.size, input.body.path).catch(() => {});
    return { sha256: input.body.sha256, seeded: true };
  } catch (err) {
    if (!(err instanceof AlreadyExistsError)) throw err;
    const again = await existing();
    if (again === undefined) throw new S3Error('ConditionalRequestConflict', 'The deltaspace reference changed concurrently; please retry.', { cause: err });
    return again;
  }
}
