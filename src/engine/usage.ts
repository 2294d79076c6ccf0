import { mapLimit } from '../log.js';
import type { Backend } from '../storage/backend.js';
import { dataBlob, deltaspaceOf, keyOfMetaBlob, META_SUFFIX, REFERENCE, REFERENCE_RECORD, referenceBlob } from './keys.js';
import { encodeMeta, parseObjectMeta, parseReferenceMeta, type ObjectMeta, type ReferenceMeta } from './meta.js';

// How the storage format accounts for bytes: what an object, a reference and
// a bucket cost (objects, logical bytes as uploaded, stored bytes: every blob
// the backend holds, sidecars included), and scanUsage, which recounts a
// bucket or prefix from its sidecars. The per-bucket figures kept current
// from the engine's commits and deletes live in ./usage-tracker.ts.
// docs/operations.md, "Usage figures" and "The stats command".

/** What one object (or a reference: objects 0) adds to its bucket. */
export interface Usage {
  logical: number;
  stored: number;
  /** 1 unless said otherwise; a reference counts 0 objects. */
  objects?: number;
}

export interface BucketUsage {
  objects: number;
  logical: number;
  stored: number;
}

/** An object's usage: its data blob plus its sidecar. */
export function objectUsage(meta: ObjectMeta, sidecarBytes = encodeMeta(meta).length): Usage {
  // Every stored form counts (two while a compaction is half done).
  const blobs = meta.stored.reduce((n, f) => n + Math.max(0, f.size ?? 0), 0);
  return { logical: meta.size, stored: blobs + sidecarBytes };
}

/** The usage of one key's stored versions (two after an interrupted overwrite), or null. */
export function versionsUsage(metas: (ObjectMeta | undefined)[]): Usage | null {
  const present = metas.filter((m): m is ObjectMeta => !!m).map((m) => objectUsage(m));
  if (present.length === 0) return null;
  return { logical: present[0].logical, stored: present.reduce((n, u) => n + u.stored, 0) };
}

/** A reference's usage: its blob plus its sidecar, no object, no logical bytes. */
export function referenceUsage(ref: ReferenceMeta, sidecarBytes?: number): Usage {
  const { etag: _drop, ...plain } = ref as ReferenceMeta & { etag?: string };
  void _drop;
  return { logical: 0, stored: ref.size + (sidecarBytes ?? encodeMeta(plain).length), objects: 0 };
}

// ---- scanning -------------------------------------------------------------

export interface DeltaspaceUsage {
  bucket: string;
  deltaspace: string;
  objects: number;
  deltas: number;
  direct: number;
  logical_bytes: number;
  /** Everything the deltaspace holds: objects, sidecars and the reference. */
  stored_bytes: number;
  /** The reference's blob and sidecar (0 when there is none). */
  reference_bytes: number;
  saving: number;
}

export interface ScanResult {
  objects: number;
  logical_bytes: number;
  stored_bytes: number;
  saving: number;
  deltaspaces: DeltaspaceUsage[];
}

export interface ScanOptions {
  readsPerSecond?: number;
  shouldStop?: () => boolean;
}

/** 1 - stored/logical, rounded to 0.1 %; 0 for an empty selection. */
export const saving = (logical: number, stored: number) => (logical > 0 ? Math.round((1 - stored / logical) * 1000) / 1000 : 0);

/**
 * The usage of a bucket (or of the keys under a prefix), computed from the
 * sidecars: THE place that knows how the storage format accounts for bytes.
 * It walks the backend listing once, reading each object sidecar (and each
 * reference sidecar) once; memory grows with the number of keys (to settle
 * keys that an interrupted overwrite left with two sidecars).
 */
export async function scanUsage(backend: Backend, bucket: string, prefix = '', opts: ScanOptions = {}): Promise<ScanResult> {
  const spaces = new Map<string, DeltaspaceUsage>();
  const space = (name: string) => {
    let s = spaces.get(name);
    if (!s) spaces.set(name, (s = { bucket, deltaspace: name, objects: 0, deltas: 0, direct: 0, logical_bytes: 0, stored_bytes: 0, reference_bytes: 0, saving: 0 }));
    return s;
  };
  const seen = new Map<string, { meta: ObjectMeta; bytes: number }>();
  const refs: { name: string; bytes: number }[] = [];
  const sidecars: { name: string; bytes: number }[] = [];
  // Reference records: `reference.meta` (format 2), `reference.bin.meta` (format 1).
  const refNames = [REFERENCE_RECORD, REFERENCE + META_SUFFIX];
  const refSpace = (name: string) => {
    for (const r of refNames) {
      if (name === r) return '';
      if (name.endsWith(`/${r}`)) return name.slice(0, -(r.length + 1));
    }
    return null;
  };
  // A reference lives at the deltaspace's top; list the deltaspace of a
  // partial prefix ('rel/v1' -> 'rel/') so its reference is found too.
  const listPrefix = prefix.slice(0, prefix.lastIndexOf('/') + 1);
  for await (const b of backend.list(bucket, { prefix: listPrefix })) {
    if (opts.shouldStop?.()) break;
    if (refSpace(b.name) !== null) refs.push({ name: b.name, bytes: b.size });
    else if (b.name.startsWith(prefix) && keyOfMetaBlob(b.name)) sidecars.push({ name: b.name, bytes: b.size });
  }
  const started = Date.now();
  let reads = 0;
  const pace = async () => {
    reads++;
    if (!opts.readsPerSecond) return;
    const due = started + (reads / opts.readsPerSecond) * 1000;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
  };
  await mapLimit(sidecars, 8, async ({ name, bytes }) => {
    if (opts.shouldStop?.()) return;
    await pace();
    const blob = await backend.readSmall(bucket, name);
    if (!blob) return;
    let meta: ObjectMeta;
    try {
      const k = keyOfMetaBlob(name)!;
      meta = parseObjectMeta(blob.body, { dataBlob: (kind) => dataBlob(k.key, kind), referenceBlob: referenceBlob(deltaspaceOf(k.key)) });
    } catch {
      return;
    }
    const prev = seen.get(meta.key);
    // Two sidecars for one key: an overwrite that changed kind was cut
    // short; the newer one is the object, the older one is still stored.
    if (prev) {
      const [older, newer] = prev.meta.created >= meta.created ? [{ meta, bytes }, prev] : [prev, { meta, bytes }];
      space(deltaspaceOf(meta.key)).stored_bytes += objectUsage(older.meta, older.bytes).stored;
      seen.set(meta.key, newer);
    } else seen.set(meta.key, { meta, bytes });
  });
  for (const { meta, bytes } of seen.values()) {
    const s = space(deltaspaceOf(meta.key));
    const u = objectUsage(meta, bytes);
    s.objects++;
    if (meta.kind === 'delta' || meta.kind === 'gzip') s.deltas++;
    else s.direct++;
    s.logical_bytes += u.logical;
    s.stored_bytes += u.stored;
  }
  await mapLimit(refs, 8, async ({ name, bytes }) => {
    const spaceName = refSpace(name)!;
    // A reference belongs to the selection when its deltaspace does, or
    // when a selected object lives in its deltaspace.
    if (!(`${spaceName}/`.startsWith(prefix) || spaces.has(spaceName))) return;
    const blob = await backend.readSmall(bucket, name);
    if (!blob) return;
    let ref: ReferenceMeta;
    try {
      ref = parseReferenceMeta(blob.body, referenceBlob(spaceName));
    } catch {
      return;
    }
    const s = space(spaceName);
    const r = referenceUsage(ref, bytes).stored;
    s.reference_bytes += r;
    s.stored_bytes += r;
  });
  const rows = [...spaces.values()].sort((a, b) => (a.deltaspace < b.deltaspace ? -1 : a.deltaspace > b.deltaspace ? 1 : 0));
  for (const r of rows) r.saving = saving(r.logical_bytes, r.stored_bytes);
  const objects = rows.reduce((n, r) => n + r.objects, 0);
  const logical = rows.reduce((n, r) => n + r.logical_bytes, 0);
  const stored = rows.reduce((n, r) => n + r.stored_bytes, 0);
  return { objects, logical_bytes: logical, stored_bytes: stored, saving: saving(logical, stored), deltaspaces: rows };
}
