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

/** Maps a sidecar blob name back to its user key, or null for other blobs. */
export function keyOfMetaBlob(name: string): { key: string; kind: StorageKind } | null {
  for (const kind of ['delta', 'direct'] as const) {
    const suffix = `.${kind}${META_SUFFIX}`;
    if (name.endsWith(suffix)) return { key: name.slice(0, -suffix.length), kind };
  }
  return null;
}
