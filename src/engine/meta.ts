import type { StorageKind } from './keys.js';

// The `.meta` sidecar: a small JSON document per stored blob set. Its format
// is public (docs/storage-format.md) so that another tool can read a bucket
// without the proxy; bump FORMAT_VERSION on incompatible changes.

export const FORMAT_VERSION = 1;

export interface ObjectMeta {
  format: number;
  tool: string;
  key: string;
  kind: StorageKind;
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
  /** Bytes the backend holds for this object (delta or direct blob). */
  stored_size: number;
  /** Backend etag of the data blob when it was written (guards deletes). */
  data_etag?: string;
  /** Delta only: SHA-256 of the reference it applies to. */
  reference_sha256?: string;
  /**
   * Delta only: this upload seeded its deltaspace's reference (whose bytes
   * are this object's), so the object's stored size counts the reference.
   */
  seeded_reference?: boolean;
  /** Multipart uploads: number of parts (the ETag's suffix). */
  parts?: number;
  /** Multipart uploads: size of each part, in order. */
  part_sizes?: number[];
}

export interface ReferenceMeta {
  format: number;
  tool: string;
  kind: 'reference';
  size: number;
  sha256: string;
  created: string;
  /** The user key whose upload seeded the reference. */
  source_key: string;
}

export function encodeMeta(meta: ObjectMeta | ReferenceMeta): Buffer {
  return Buffer.from(JSON.stringify(meta, null, 1));
}

function isRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && Object.values(v).every((x) => typeof x === 'string');
}

/** Parses and validates an object sidecar; throws on anything malformed. */
export function parseObjectMeta(buf: Buffer): ObjectMeta {
  const m = JSON.parse(buf.toString('utf8')) as Partial<ObjectMeta>;
  const ok =
    typeof m === 'object' && m !== null &&
    typeof m.format === 'number' && m.format <= FORMAT_VERSION &&
    typeof m.key === 'string' && (m.kind === 'delta' || m.kind === 'direct') &&
    Number.isSafeInteger(m.size) && typeof m.sha256 === 'string' && typeof m.md5 === 'string' &&
    typeof m.etag === 'string' && typeof m.created === 'string' && Number.isSafeInteger(m.stored_size) &&
    (m.kind !== 'delta' || typeof m.reference_sha256 === 'string');
  if (!ok) throw new Error('malformed object sidecar');
  return {
    ...m,
    content_type: typeof m.content_type === 'string' ? m.content_type : 'application/octet-stream',
    headers: isRecord(m.headers) ? m.headers : {},
    user_metadata: isRecord(m.user_metadata) ? m.user_metadata : {},
    checksums: isRecord(m.checksums) ? m.checksums : {},
  } as ObjectMeta;
}

export function parseReferenceMeta(buf: Buffer): ReferenceMeta {
  const m = JSON.parse(buf.toString('utf8')) as Partial<ReferenceMeta>;
  if (m?.kind !== 'reference' || !Number.isSafeInteger(m.size) || typeof m.sha256 !== 'string') {
    throw new Error('malformed reference sidecar');
  }
  return m as ReferenceMeta;
}
