import { S3Error } from '../../errors.js';
import type { PlainObject } from '../../storage/plain.js';
import { UnsupportedFormatError, type ObjectMeta } from '../meta.js';

// The DeltaGlider CLI's layout (docs/storage-format.md, "DeltaGlider CLI
// layout"): a user key K is stored either under K itself (direct) or as
// `K.delta`, an xdelta3 delta against `<deltaspace>/reference.bin`; the
// object's facts travel in `x-amz-meta-dg-*` metadata. Older CLI releases
// wrote the same facts under other spellings, which are read too.

export const DELTA_SUFFIX = '.delta';
export const REFERENCE_NAME = 'reference.bin';
/** The CLI's own records (stats caches, rehydrated temp files): never user objects. */
export const CLI_INTERNAL = '.deltaglider/';
/** Metadata the proxy adds for what the CLI has no field for. */
export const PROXY_META = 'dg-proxy-';

/** Every spelling of each CLI field, preferred first. */
const ALIASES = {
  tool: ['dg-tool', 'dg_tool', 'tool'],
  original_name: ['dg-original-name', 'dg_original_name', 'original_name', 'original-name'],
  file_sha256: ['dg-file-sha256', 'dg_file_sha256', 'file_sha256', 'file-sha256'],
  file_size: ['dg-file-size', 'dg_file_size', 'file_size', 'file-size'],
  created_at: ['dg-created-at', 'dg_created_at', 'created_at', 'created-at'],
  ref_key: ['dg-ref-key', 'dg_ref_key', 'ref_key', 'ref-key'],
  ref_sha256: ['dg-ref-sha256', 'dg_ref_sha256', 'ref_sha256', 'ref-sha256'],
  delta_size: ['dg-delta-size', 'dg_delta_size', 'delta_size', 'delta-size'],
  delta_cmd: ['dg-delta-cmd', 'dg_delta_cmd', 'delta_cmd', 'delta-cmd'],
  note: ['dg-note', 'dg_note', 'note'],
  compression: ['dg-compression', 'dg_compression', 'compression'],
  source_name: ['dg-source-name', 'dg_source_name', 'source_name', 'source-name'],
} as const;
const RESERVED = new Set<string>(Object.values(ALIASES).flat());

export function field(meta: Record<string, string>, name: keyof typeof ALIASES): string | undefined {
  for (const k of ALIASES[name]) if (meta[k]) return meta[k];
  return undefined;
}

export function deltaName(key: string): string {
  return key + DELTA_SUFFIX;
}

export function referenceName(space: string): string {
  return space === '' ? REFERENCE_NAME : `${space}/${REFERENCE_NAME}`;
}

const baseName = (key: string) => key.slice(key.lastIndexOf('/') + 1);

/** The user key a stored name stands for, or null for the layout's own objects. */
export function userKeyOf(name: string): string | null {
  if (baseName(name) === REFERENCE_NAME || name.startsWith(CLI_INTERNAL)) return null;
  return name.endsWith(DELTA_SUFFIX) ? name.slice(0, -DELTA_SUFFIX.length) : name;
}

/**
 * Keys this layout cannot hold without meeting another object's data: a key
 * ending in `.delta` would be read as the delta of another key, `reference.bin`
 * is a deltaspace's reference, `.deltaglider/` the CLI's own records.
 */
export function checkCliKey(key: string): void {
  const refuse = (why: string) => new S3Error('InvalidArgument', `This bucket is in the DeltaGlider CLI layout, which cannot hold this key: ${why}.`, { fields: { ArgumentName: 'key', ArgumentValue: key.slice(0, 256) } });
  if (key.endsWith(DELTA_SUFFIX)) throw refuse(`a key ending in "${DELTA_SUFFIX}" is the name of another key's delta`);
  if (baseName(key) === REFERENCE_NAME) throw refuse(`"${REFERENCE_NAME}" is the name of a deltaspace's reference`);
  if (key.startsWith(CLI_INTERNAL)) throw refuse(`"${CLI_INTERNAL}" holds the CLI's own records`);
}

/** S3 metadata travels in HTTP headers: non-ASCII names are written percent-encoded. */
export function asciiSafe(s: string): string {
  return /^[\x20-\x7e]*$/.test(s) ? s : encodeURIComponent(s);
}

/** The CLI's timestamps: ISO 8601, UTC, with or without a trailing Z. */
export function parseCreated(v: string | undefined, fallback: Date): string {
  if (v) {
    const iso = /(Z|[+-]\d\d:?\d\d)$/.test(v) ? v : `${v}Z`;
    const t = Date.parse(iso.replace(/(\.\d{3})\d+/, '$1'));
    if (!Number.isNaN(t)) return new Date(t).toISOString();
  }
  return fallback.toISOString();
}

/**
 * An object of this layout as the engine describes objects. Deltas carry no
 * MD5 of the original (the CLI records none), so their ETag is derived from
 * the SHA-256 with a "-1" suffix, which clients read as "not an MD5" rather
 * than as a digest to check the bytes against.
 */
export function describe(key: string, o: PlainObject, kind: 'direct' | 'delta', bucket: string): ObjectMeta {
  const m = o.metadata;
  const sha256 = field(m, 'file_sha256') ?? '';
  const size = kind === 'delta' ? Number(field(m, 'file_size')) : o.size;
  if (kind === 'delta' && (!sha256 || !Number.isSafeInteger(size) || size < 0 || !field(m, 'ref_sha256'))) {
    // 501 with the reason (GET and HEAD say why), never a 500.
    throw new UnsupportedFormatError(`${bucket}/${o.key}: delta without dg-file-sha256, dg-file-size or dg-ref-sha256 metadata`);
  }
  const md5 = m[`${PROXY_META}md5`] ?? (kind === 'direct' && /^[0-9a-f]{32}$/.test(o.etag) ? o.etag : '');
  // Direct objects keep S3's own ETag (an MD5, or a multipart form for plain objects).
  const etag = m[`${PROXY_META}etag`] ?? (md5 || (kind === 'direct' && o.etag ? o.etag : `${(sha256 || o.etag).slice(0, 32)}-1`));
  const user: Record<string, string> = {};
  const checksums: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) {
    if (k.startsWith(`${PROXY_META}checksum-`)) checksums[k.slice(`${PROXY_META}checksum-`.length)] = v;
    else if (!RESERVED.has(k) && !k.startsWith('dg-')) user[k] = v;
  }
  const parts = Number(m[`${PROXY_META}parts`]);
  const partSizes = m[`${PROXY_META}part-sizes`]?.split(',').map(Number);
  const spaceRef = field(m, 'ref_key') ?? referenceName(key.includes('/') ? key.slice(0, key.lastIndexOf('/')) : '');
  return {
    format: 0,
    tool: field(m, 'tool') ?? '',
    key,
    size,
    sha256,
    md5,
    etag,
    created: parseCreated(field(m, 'created_at'), o.lastModified),
    content_type: o.contentType || 'application/octet-stream',
    headers: o.headers,
    user_metadata: user,
    checksums,
    ...(Number.isSafeInteger(parts) && parts > 0 ? { parts } : {}),
    ...(partSizes && partSizes.every((n) => Number.isSafeInteger(n) && n >= 0) ? { part_sizes: partSizes } : {}),
    stored: [
      kind === 'direct'
        ? { kind, blob: o.key, size: o.size, etag: o.etag }
        : { kind, blob: o.key, size: o.size, etag: o.etag, codec: 'xdelta3', reference: { blob: spaceRef, sha256: field(m, 'ref_sha256')!, size: -1 } },
    ],
    kind,
    stored_size: o.size,
  };
}

/** S3's limit on user metadata (PutObject reference): names and values, 2 KB in all. */
export const MAX_METADATA = 2048;

/** Refuses user metadata that would collide with the layout's own names. */
export function checkUserMetadata(user: Record<string, string>): void {
  for (const k of Object.keys(user)) {
    if (k.startsWith('dg-') || RESERVED.has(k)) {
      throw new S3Error('InvalidArgument', `x-amz-meta-${k} is reserved in a bucket in the DeltaGlider CLI layout (its own records use dg-* names).`, { fields: { ArgumentName: `x-amz-meta-${k}` } });
    }
  }
}

export function metadataSize(m: Record<string, string>): number {
  return Object.entries(m).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
}
