import { randomBytes } from 'node:crypto';
import { S3Error } from '../errors.js';

// Naming rules for buckets and keys, and the mapping of user keys to blob names
// (docs/storage-format.md).

export type StorageKind = 'delta' | 'direct';
export const REFERENCE = 'reference.bin';
export const META_SUFFIX = '.meta';
export const MAX_KEY_BYTES = 1024;

/**
 * S3 general-purpose bucket naming rules
 * (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
 */
export function checkBucketName(name: string): void {
  const bad = (why: string) => new S3Error('InvalidBucketName', `The specified bucket is not valid: ${why}.`, { fields: { BucketName: name } });
  if (name.length < 3 || name.length > 63) throw bad('length must be 3 to 63 characters');
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name)) throw bad('only lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit');
  if (name.includes('..')) throw bad('two adjacent periods');
  if (/^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)) throw bad('formatted as an IP address');
  if (/^(xn--|sthree-|amzn-s3-demo-)/.test(name) || /(-s3alias|--ol-s3|\.mrap|--x-s3|--table-s3)$/.test(name)) throw bad('reserved prefix or suffix');
}

/** Whether a name could be a bucket at all (requests for others: NoSuchBucket). */
export function isBucketName(name: string): boolean {
  try {
    checkBucketName(name);
    return true;
  } catch {
    return false;
  }
}

// Characters XML 1.0 cannot carry (listings are XML): refused rather than
// stored under a name no listing could return.
// eslint-disable-next-line no-control-regex
const XML_INVALID = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export function checkKey(key: string): void {
  if (key.length === 0) throw new S3Error('InvalidArgument', 'Object key must not be empty.');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new S3Error('KeyTooLongError', 'Your key is too long (at most 1024 bytes of UTF-8).', { fields: { Key: key.slice(0, 64) } });
  }
  if (XML_INVALID.test(key)) throw new S3Error('InvalidArgument', 'Object key contains a character XML cannot represent.');
}

/** The deltaspace of a key: everything before its last '/' ('' at the top). */
export function deltaspaceOf(key: string): string {
  const i = key.lastIndexOf('/');
  return i < 0 ? '' : key.slice(0, i);
}

export function dataBlob(key: string, kind: StorageKind): string {
  return `${key}.${kind}`;
}

export function metaBlob(key: string, kind: StorageKind): string {
  return `${key}.${kind}${META_SUFFIX}`;
}

export function referenceBlob(space: string): string {
  return space === '' ? REFERENCE : `${space}/${REFERENCE}`;
}

/** The prefix under which a deltaspace's blobs live. */
export function spacePrefix(space: string): string {
  return space === '' ? '' : `${space}/`;
}

// ---- format 2 names (docs/storage-format.md) --------------------------
//
// Every user key K maps to names that end in `.object.meta`, `.delta`,
// `.direct`, `.delta.meta` or `.direct.meta`; nothing else a key can produce
// ends in `.bin`. So immutable blobs `K.<id>.<role>.bin` (id: 16 hex digits,
// no dot) and references `reference.<id>.bin` never meet a key's names, and
// each such name parses back to exactly one (key, id, role).

/** The one sidecar of an object in format 2: the commit point. */
export const OBJECT_SUFFIX = '.object.meta';
/** A deltaspace's format 2 reference record. */
export const REFERENCE_RECORD = 'reference.meta';

export type BlobRole = 'direct' | 'delta' | 'blocks';

/** A name never used before: 16 hex digits. */
export function newBlobId(): string {
  return randomBytes(8).toString('hex');
}

export function objectSidecar(key: string): string {
  return key + OBJECT_SUFFIX;
}

export function objectBlob(key: string, role: BlobRole, id: string): string {
  return `${key}.${id}.${role}.bin`;
}

export function referenceBlobV2(space: string, id: string): string {
  return `${spacePrefix(space)}reference.${id}.bin`;
}

export function referenceRecord(space: string): string {
  return spacePrefix(space) + REFERENCE_RECORD;
}

/** What an immutable format 2 blob name belongs to, or null for other names. */
export function parseBlobName(name: string): { key: string; id: string; role: BlobRole } | { space: string; id: string; role: 'reference' } | null {
  const m = /^(.*)\.([0-9a-f]{16})\.(direct|delta|blocks)\.bin$/s.exec(name);
  if (m) return { key: m[1], id: m[2], role: m[3] as BlobRole };
  const r = /^(?:(.*)\/)?reference\.([0-9a-f]{16})\.bin$/s.exec(name);
  if (r) return { space: r[1] ?? '', id: r[2], role: 'reference' };
  return null;
}

/** Maps a sidecar blob name (either format) back to its user key, or null for other blobs. */
export function keyOfMetaBlob(name: string): { key: string; kind: StorageKind | 'object' } | null {
  if (name.endsWith(OBJECT_SUFFIX)) return { key: name.slice(0, -OBJECT_SUFFIX.length), kind: 'object' };
  for (const kind of ['delta', 'direct'] as const) {
    const suffix = `.${kind}${META_SUFFIX}`;
    if (name.endsWith(suffix)) return { key: name.slice(0, -suffix.length), kind };
  }
  return null;
}
