import { mapLimit } from '../log.js';
import type { Backend } from '../storage/backend.js';
import { format1Sidecar } from './format1.js';
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

/**
 * An object's usage: the blobs its sidecar names (each stored form, the
 * block digests when they are a blob of their own) plus the sidecar itself.
 * Blobs a newer commit replaced are not counted: they await removal
 * (blob_grace_seconds) and no object owns them.
 */
export function objectUsage(meta: ObjectMeta, sidecarBytes?: number): Usage {
  const blobs = new Map<string, number>();
  for (const f of meta.stored) if (typeof f.blob === 'string' && typeof f.size === 'number' && f.size >= 0) blobs.set(f.blob, f.size);
  let stored = sidecarBytes ?? (meta.format === 1 ? format1Sidecar(meta, String(meta.stored[0]?.etag ?? '')).length : encodeMeta(meta).length);
  for (const n of blobs.values()) stored += n;
  if (meta.blocks?.blob) stored += Math.ceil(meta.size / meta.blocks.size) * 4;
  return { logical: meta.size, stored };
}

/** The usage of one key's stored versions (format 2 and leftovers of format 1), or null. */
export function versionsUsage(metas: ObjectMeta[]): Usage | null {
  if (metas.length === 0) return null;
  const all = metas.map((m) => objectUsage(m));
  return { logical: all[0].logical, stored: all.reduce((n, u) => n + u.stored, 0) };
}

/** A reference's usage: its blob plus its record, no object, no logical bytes. */
export function referenceUsage(ref: ReferenceMeta, recordBytes?: number): Usage {
  const { etag: _drop, ...plain } = ref as ReferenceMeta & { etag?: string };
  void _drop;
  return { logical: 0, stored: ref.size + (recordBytes ?? encodeMeta(plain).length), objects: 0 };
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
  const versions = new Map<string, { meta: ObjectMeta; bytes: number }[]>();
  const refs: { name: string; space: string; bytes: number; format1: boolean }[] = [];
  const sidecars: { name: string; key: string; bytes: number }[] = [];
  const v1Ref = REFERENCE + META_SUFFIX;
  // A reference lives at the deltaspace's top; list the deltaspace of a
  // partial prefix ('rel/v1' -> 'rel/') so that its reference is found too.
  const listPrefix = prefix.slice(0, prefix.lastIndexOf('/') + 1);
  for await (const b of backend.list(bucket, { prefix: listPrefix })) {
    if (opts.shouldStop?.()) break;
    const slash = b.name.lastIndexOf('/');
    const base = b.name.slice(slash + 1);
    const dir = slash < 0 ? '' : b.name.slice(0, slash);
    if (base === REFERENCE_RECORD || base === v1Ref) {
      refs.push({ name: b.name, space: dir, bytes: b.size, format1: base === v1Ref });
      continue;
    }
    const k = b.name.startsWith(prefix) ? keyOfMetaBlob(b.name) : null;
    if (k) sidecars.push({ name: b.name, key: k.key, bytes: b.size });
  }
  const started = Date.now();
  let reads = 0;
  const pace = async () => {
    reads++;
    if (!opts.readsPerSecond) return;
    const due = started + (reads / opts.readsPerSecond) * 1000;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
  };
  await mapLimit(sidecars, 8, async ({ name, key, bytes }) => {
    if (opts.shouldStop?.()) return;
    await pace();
    const blob = await backend.readSmall(bucket, name);
    if (!blob) return;
    let meta: ObjectMeta;
    try {
      meta = parseObjectMeta(blob.body, { dataBlob: (kind) => dataBlob(key, kind), referenceBlob: referenceBlob(deltaspaceOf(key)) });
    } catch {
      return;
    }
    const list = versions.get(key) ?? [];
    list.push({ meta, bytes });
    versions.set(key, list);
  });
  for (const list of versions.values()) {
    // The visible version: format 2, else the newest format 1 sidecar;
    // the others (an upgrade or an overwrite cut short) are still stored.
    list.sort((a, b) => b.meta.format - a.meta.format || (a.meta.created < b.meta.created ? 1 : -1));
    const visible = list[0].meta;
    const s = space(deltaspaceOf(visible.key));
    s.objects++;
    if (visible.kind === 'delta') s.deltas++;
    else s.direct++;
    s.logical_bytes += visible.size;
    for (const v of list) s.stored_bytes += objectUsage(v.meta, v.bytes).stored;
  }
  await mapLimit(refs, 8, async ({ name, space: spaceName, bytes, format1 }) => {
    // A reference belongs to the selection when its deltaspace does, or
    // when a selected object lives in its deltaspace.
    if (!(`${spaceName}/`.startsWith(prefix) || spaces.has(spaceName))) return;
    const blob = await backend.readSmall(bucket, name);
    if (!blob) return;
    let ref: ReferenceMeta;
    try {
      ref = parseReferenceMeta(blob.body, format1 ? referenceBlob(spaceName) : undefined);
    } catch {
      return;
    }
    const s = space(spaceName);
    const u = referenceUsage(ref, bytes).stored;
    s.reference_bytes += u;
    s.stored_bytes += u;
  });
  const rows = [...spaces.values()].sort((a, b) => (a.deltaspace < b.deltaspace ? -1 : a.deltaspace > b.deltaspace ? 1 : 0));
  for (const r of rows) r.saving = saving(r.logical_bytes, r.stored_bytes);
  const objects = rows.reduce((n, r) => n + r.objects, 0);
  const logical = rows.reduce((n, r) => n + r.logical_bytes, 0);
  const stored = rows.reduce((n, r) => n + r.stored_bytes, 0);
  return { objects, logical_bytes: logical, stored_bytes: stored, saving: saving(logical, stored), deltaspaces: rows };
}
