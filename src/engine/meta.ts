// Sidecars: the small JSON documents that describe what the backend holds.
// Their format is public (docs/storage-format.md) so that another tool can
// read a bucket without the proxy.
//
// Format 1 (first release): `K.delta.meta` / `K.direct.meta` beside data
// blobs `K.delta` / `K.direct` that were rewritten in place.
// Format 2: one sidecar `K.object.meta` per object naming immutable blobs
// (./keys.ts). Both parse into ObjectMeta; writers write format 2 unless the
// rolling-upgrade setting asks for format 1.

import { isGzipForm, type GzipForm } from './gzip-form.js';

/** The newest sidecar format this release reads and writes. */
export const FORMAT_VERSION = 2;

/** A stored form this release knows how to read. */
export type FormKind = 'direct' | 'delta' | 'gzip';

export interface ReferenceRef {
  /** Blob name of the reference (format 2: immutable, `reference.<id>.bin`). */
  blob: string;
  sha256: string;
  size: number;
  /** Backend etag of the reference blob when it was written. */
  etag?: string;
  /** The upload that wrote this delta also wrote the reference (from its own bytes). */
  seeded?: boolean;
}

/** One way to rebuild the object's bytes from blobs. */
export type StoredForm =
  | { kind: 'direct'; blob: string; size: number; etag: string }
  | {
      kind: 'delta';
      blob: string;
      size: number;
      etag: string;
      codec: 'xdelta3';
      reference: ReferenceRef;
      /** The largest source segment of the delta's windows, bytes: how much of the reference one window reads (./vcdiff.ts). */
      max_source_segment?: number;
    }
  /** A gzip upload as a delta of its decompressed bytes plus a recipe (./gzip-form.ts). */
  | GzipForm
  /** A kind written by a newer release: kept as read, never used. */
  | { kind: string; blob?: string; size?: number; etag?: string; [k: string]: unknown };

/**
 * Per-block digests of the original bytes, for verified ranged reads. Blocks
 * are `size` bytes (the last one shorter); each digest is the CRC-32 (zlib's,
 * as in gzip) of one block, packed big-endian 4 bytes each. Small lists are
 * inline (base64); larger ones live in an immutable blob.
 */
export interface BlockDigests {
  size: number;
  alg: 'crc32';
  inline?: string;
  blob?: string;
  blob_etag?: string;
}

export interface ObjectMeta {
  format: number;
  tool: string;
  key: string;
  /** Size of the original bytes. */
  size: number;
  sha256: string;
  md5: string;
  /** ETag without quotes: MD5 hex, or '<hex>-<parts>' for multipart uploads. */
  etag: string;
  /** ISO-8601; also the object's Last-Modified. */
  created: string;
  content_type: string;
  /** Stored representation headers (content-encoding, cache-control, ...). */
  headers: Record<string, string>;
  /** x-amz-meta-* values, names lower-cased without the prefix. */
  user_metadata: Record<string, string>;
  /** Client-supplied checksums (algorithm -> base64), returned on request. */
  checksums: Record<string, string>;
  /** Multipart uploads: number of parts (the ETag's suffix). */
  parts?: number;
  /** Multipart uploads: size of each part, in order. */
  part_sizes?: number[];
  /** Ways to rebuild the bytes, preferred first (format 2; synthesised for format 1). */
  stored: StoredForm[];
  blocks?: BlockDigests;
  /** Work a background task still owes this object (e.g. compaction); readers ignore it. */
  pending?: Record<string, unknown>;
  // Derived on parse, never written:
  /** Kind of the first stored form (x-deltaglider-stored-as). */
  kind: string;
  /** Bytes of the first stored form's blob. */
  stored_size: number;
  /**
   * The first form is a delta against a reference holding this very object's
   * bytes: the upload that seeded the reference, whose stored cost includes
   * it (x-deltaglider-stored-size, stats).
   */
  seeded_reference?: boolean;
}

/** Whether an object's first form is a delta against its own bytes (it seeded the reference). */
export function seededReference(sha256: string, stored: StoredForm[]): boolean {
  const f = stored[0] as { kind: string; reference?: { sha256?: string } };
  return f?.kind === 'delta' && f.reference?.sha256 === sha256;
}

/** The format 2 reference record of a deltaspace (`reference.meta`). */
export interface ReferenceMeta {
  format: number;
  tool: string;
  kind: 'reference';
  /** Blob holding the reference bytes (format 1: always `reference.bin`). */
  blob: string;
  blob_etag?: string;
  size: number;
  sha256: string;
  created: string;
  /** The user key whose upload seeded the reference. */
  source_key: string;
}

/** A sidecar names a format this release cannot read. */
export class UnsupportedFormatError extends Error {
  constructor(readonly what: string) {
    super(what);
    this.name = 'UnsupportedFormatError';
  }
}

export function encodeMeta(meta: ObjectMeta | ReferenceMeta): Buffer {
  if (meta.kind === 'reference') return encodeRaw(meta);
  // kind, stored_size and seeded_reference are derived on parse, never written.
  const { kind: _kind, stored_size: _size, seeded_reference: _seeded, ...doc } = meta as ObjectMeta;
  void _kind;
  void _size;
  void _seeded;
  return encodeRaw(doc);
}

export function encodeRaw(doc: object): Buffer {
  return Buffer.from(JSON.stringify(doc, null, 1));
}

function isRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && Object.values(v).every((x) => typeof x === 'string');
}

function parseForm(f: unknown): StoredForm | null {
  if (typeof f !== 'object' || f === null) return null;
  const x = f as Record<string, unknown>;
  if (typeof x.kind !== 'string') return null;
  if (x.kind === 'direct' || x.kind === 'delta') {
    if (typeof x.blob !== 'string' || !Number.isSafeInteger(x.size) || typeof x.etag !== 'string') return null;
    if (x.kind === 'delta') {
      const r = x.reference as Record<string, unknown> | undefined;
      if (!r || typeof r.blob !== 'string' || typeof r.sha256 !== 'string' || !Number.isSafeInteger(r.size)) return null;
    }
  }
  if (x.kind === 'gzip' && !isGzipForm(x as StoredForm)) return null;
  return x as StoredForm;
}

/**
 * Parses and validates an object sidecar of either format; throws on anything
 * malformed. Formats newer than this release throw UnsupportedFormatError:
 * a reader never guesses at a layout it does not know.
 */
export function parseObjectMeta(buf: Buffer, names?: { dataBlob: (kind: 'delta' | 'direct') => string; referenceBlob: string }): ObjectMeta {
  const m = JSON.parse(buf.toString('utf8')) as Partial<ObjectMeta> & Record<string, unknown>;
  if (typeof m !== 'object' || m === null || typeof m.format !== 'number') throw new Error('malformed object sidecar');
  if (m.format > FORMAT_VERSION) throw new UnsupportedFormatError(`storage format ${m.format} (this release reads formats 1 and 2)`);
  const common =
    typeof m.key === 'string' && Number.isSafeInteger(m.size) && typeof m.sha256 === 'string' && typeof m.md5 === 'string' &&
    typeof m.etag === 'string' && typeof m.created === 'string';
  if (!common) throw new Error('malformed object sidecar');
  let stored: StoredForm[];
  if (m.format === 1) {
    // Format 1: kind, stored_size, data_etag, reference_sha256 at the top;
    // the data blob is `K.<kind>` and the reference `reference.bin`.
    const kind = m.kind as unknown;
    if ((kind !== 'delta' && kind !== 'direct') || !Number.isSafeInteger(m.stored_size) || !names) throw new Error('malformed object sidecar');
    if (kind === 'delta' && typeof m.reference_sha256 !== 'string') throw new Error('malformed object sidecar');
    const etag = typeof m.data_etag === 'string' ? m.data_etag : '';
    const blob = names.dataBlob(kind);
    stored = [
      kind === 'direct'
        ? { kind, blob, size: m.stored_size!, etag }
        : { kind, blob, size: m.stored_size!, etag, codec: 'xdelta3', reference: { blob: names.referenceBlob, sha256: m.reference_sha256 as string, size: -1 } },
    ];
  } else {
    if (!Array.isArray(m.stored) || m.stored.length === 0) throw new Error('malformed object sidecar');
    stored = m.stored.map((f) => {
      const p = parseForm(f);
      if (!p) throw new Error('malformed stored form');
      return p;
    });
  }
  const b = m.blocks as BlockDigests | undefined;
  const blocks = b && Number.isSafeInteger(b.size) && b.size > 0 && b.alg === 'crc32' && (typeof b.inline === 'string' || typeof b.blob === 'string') ? b : undefined;
  return {
    format: m.format,
    tool: typeof m.tool === 'string' ? m.tool : '',
    key: m.key!,
    size: m.size!,
    sha256: m.sha256!,
    md5: m.md5!,
    etag: m.etag!,
    created: m.created!,
    content_type: typeof m.content_type === 'string' ? m.content_type : 'application/octet-stream',
    headers: isRecord(m.headers) ? m.headers : {},
    user_metadata: isRecord(m.user_metadata) ? m.user_metadata : {},
    checksums: isRecord(m.checksums) ? m.checksums : {},
    ...(Number.isSafeInteger(m.parts) ? { parts: m.parts } : {}),
    ...(Array.isArray(m.part_sizes) && m.part_sizes.every((n) => Number.isSafeInteger(n)) ? { part_sizes: m.part_sizes } : {}),
    stored,
    ...(blocks ? { blocks } : {}),
    ...(typeof m.pending === 'object' && m.pending !== null ? { pending: m.pending } : {}),
    kind: stored[0].kind,
    stored_size: stored[0].size ?? 0,
    ...(seededReference(m.sha256!, stored) ? { seeded_reference: true } : {}),
  };
}

/** Parses a reference record (format 2) or a format 1 `reference.bin.meta`. */
export function parseReferenceMeta(buf: Buffer, format1Blob?: string): ReferenceMeta {
  const m = JSON.parse(buf.toString('utf8')) as Partial<ReferenceMeta>;
  if (m?.kind !== 'reference' || !Number.isSafeInteger(m.size) || typeof m.sha256 !== 'string') {
    throw new Error('malformed reference sidecar');
  }
  if (typeof m.format === 'number' && m.format > FORMAT_VERSION) throw new UnsupportedFormatError(`reference in storage format ${m.format}`);
  if (m.format === 1 || typeof m.blob !== 'string') {
    if (!format1Blob) throw new Error('malformed reference sidecar');
    return { ...(m as ReferenceMeta), blob: format1Blob };
  }
  return m as ReferenceMeta;
}
