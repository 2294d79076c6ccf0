import { PreconditionError } from '../errors.js';
import type { Backend } from '../storage/backend.js';
import { dataBlob, metaBlob, referenceBlob, type StorageKind } from './keys.js';
import { encodeRaw, parseObjectMeta, type ObjectMeta } from './meta.js';

// Format 1, as the first release wrote it: `K.delta.meta` / `K.direct.meta`
// beside data blobs `K.delta` / `K.direct` that were rewritten in place.
// This release reads it, replaces it with format 2 on overwrite, and, while
// `storage_format = 1` is set for a rolling upgrade, writes it (as direct
// objects only: a format 1 reader must be able to read every byte written).

export interface Format1Version {
  kind: StorageKind;
  meta: ObjectMeta | null;
  /** The sidecar's backend etag. */
  etag: string;
  /** Why `meta` is null (an unreadable sidecar). */
  error?: Error;
}

export async function readFormat1(backend: Backend, bucket: string, key: string): Promise<Format1Version[]> {
  const out: Format1Version[] = [];
  await Promise.all(
    (['delta', 'direct'] as const).map(async (kind) => {
      const blob = await backend.readSmall(bucket, metaBlob(key, kind));
      if (!blob) return;
      try {
        const meta = parseObjectMeta(blob.body, { dataBlob: (k) => dataBlob(key, k), referenceBlob: referenceBlob(spaceOf(key)) });
        out.push({ kind, meta, etag: blob.etag });
      } catch (err) {
        out.push({ kind, meta: null, etag: blob.etag, error: err as Error });
      }
    }),
  );
  return out;
}

function spaceOf(key: string): string {
  const i = key.lastIndexOf('/');
  return i < 0 ? '' : key.slice(0, i);
}

/** Of the format 1 sidecars of a key, the visible one: the newer if an overwrite left two. */
export function newestFormat1(versions: Format1Version[]): Format1Version | undefined {
  const ok = versions.filter((v) => v.meta);
  if (ok.length === 0) return versions[0];
  return ok.reduce((a, b) => (a.meta!.created >= b.meta!.created ? a : b));
}

/**
 * Removes one format 1 version: sidecar first (conditional on the version
 * read), then its data, which no format 2 reader uses.
 */
export async function removeFormat1(backend: Backend, bucket: string, key: string, v: Format1Version, retire: (names: string[]) => void): Promise<void> {
  try {
    await backend.delete(bucket, metaBlob(key, v.kind), { ifMatch: v.etag });
  } catch (err) {
    if (err instanceof PreconditionError) return;
    throw err;
  }
  retire([dataBlob(key, v.kind)]);
}

/** The format 1 sidecar of a direct object (rolling-upgrade writes). */
export function format1Sidecar(meta: ObjectMeta, dataEtag: string): Buffer {
  return encodeRaw({
    format: 1,
    tool: meta.tool,
    key: meta.key,
    kind: 'direct',
    size: meta.size,
    sha256: meta.sha256,
    md5: meta.md5,
    etag: meta.etag,
    created: meta.created,
    content_type: meta.content_type,
    headers: meta.headers,
    user_metadata: meta.user_metadata,
    checksums: meta.checksums,
    stored_size: meta.size,
    data_etag: dataEtag,
    ...(meta.parts ? { parts: meta.parts } : {}),
    ...(meta.part_sizes ? { part_sizes: meta.part_sizes } : {}),
  });
}
