import { S3Error } from '../../errors.js';
import type { ListResult } from '../../engine/list.js';
import type { Ctx } from '../context.js';
import { quoteEtag } from '../object-headers.js';
import { isoDate, type XmlNode } from '../xml.js';
import { OWNER } from './list-buckets.js';

// Shared by ListObjects (v1) and ListObjectsV2.

export interface ListParams {
  prefix: string;
  delimiter: string;
  maxKeys: number;
  encode: (s: string) => string;
  encodingType?: string;
}

/**
 * S3's encoding-type=url: form encoding (a space is '+') of the UTF-8 bytes,
 * leaving letters, digits and - _ . * / as they are; clients decode it with
 * unquote_plus (botocore) or decodeURIComponent after '+' (the SDKs).
 */
export function s3UrlEncode(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.*/]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

export function listParams(ctx: Ctx): ListParams {
  const q = ctx.query;
  const rawMax = q.get('max-keys');
  let maxKeys = 1000;
  if (rawMax !== null) {
    if (!/^\d+$/.test(rawMax)) {
      throw new S3Error('InvalidArgument', 'Provided max-keys not an integer or within integer range', { fields: { ArgumentName: 'max-keys', ArgumentValue: rawMax } });
    }
    // S3 caps a page at 1000 keys whatever is asked for.
    maxKeys = Math.min(Number(rawMax), 1000);
  }
  const encodingType = q.get('encoding-type') ?? undefined;
  if (encodingType !== undefined && encodingType !== 'url') {
    throw new S3Error('InvalidArgument', 'Invalid Encoding Method specified in Request', { fields: { ArgumentName: 'encoding-type', ArgumentValue: encodingType } });
  }
  // encoding-type=url: keys and prefixes in the response are URL-encoded, for
  // keys holding characters XML cannot carry well.
  const encode = encodingType === 'url' ? s3UrlEncode : (s: string) => s;
  return { prefix: q.get('prefix') ?? '', delimiter: q.get('delimiter') ?? '', maxKeys, encode, encodingType };
}

export function contents(result: ListResult, p: ListParams, owner: boolean): XmlNode[] {
  return result.objects.map((m) => ({
    Key: p.encode(m.key),
    LastModified: isoDate(m.created),
    ETag: quoteEtag(m.etag),
    ...(Object.keys(m.checksums).length > 0 ? { ChecksumAlgorithm: Object.keys(m.checksums).map((a) => a.toUpperCase()), ChecksumType: 'FULL_OBJECT' } : {}),
    Size: m.size,
    ...(owner ? { Owner: OWNER } : {}),
    StorageClass: 'STANDARD',
  }));
}

export function commonPrefixes(result: ListResult, p: ListParams): XmlNode[] {
  return result.commonPrefixes.map((cp) => ({ Prefix: p.encode(cp) }));
}
