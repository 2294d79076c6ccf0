import type { ObjectAttributes } from '../engine/engine.js';
import type { ObjectMeta } from '../engine/meta.js';
import type { ByteRange } from '../storage/backend.js';
import { S3Error } from '../errors.js';
import { header, type Ctx } from './context.js';
import { metadataFromHeader, metadataToHeader } from './user-metadata.js';

// Object headers in and out, conditional requests and ranges.

/** Representation headers S3 stores with an object and returns on GET/HEAD. */
export const STORED_HEADERS = ['content-encoding', 'content-disposition', 'content-language', 'cache-control', 'expires'];
/** User metadata is limited to 2 KB (PutObject reference, "x-amz-meta-*"). */
const MAX_USER_METADATA = 2048;

export function attributesFrom(ctx: Ctx): Omit<ObjectAttributes, 'checksums'> {
  const headers: Record<string, string> = {};
  for (const h of STORED_HEADERS) {
    let v = header(ctx, h);
    // aws-chunked is a transfer detail, not part of the object (S3 strips it).
    if (h === 'content-encoding' && v !== undefined) v = v.split(',').map((s) => s.trim()).filter((s) => s && s.toLowerCase() !== 'aws-chunked').join(',');
    if (v) headers[h] = v;
  }
  const userMetadata: Record<string, string> = {};
  let size = 0;
  for (const [name, value] of Object.entries(ctx.req.raw.headers)) {
    if (!name.startsWith('x-amz-meta-') || value === undefined) continue;
    const k = name.slice('x-amz-meta-'.length);
    const v = metadataFromHeader(Array.isArray(value) ? value.join(',') : value);
    userMetadata[k] = v;
    // The 2 KB are bytes of the UTF-8 of names and values.
    size += Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  if (size > MAX_USER_METADATA) throw new S3Error('MetadataTooLarge', undefined, { fields: { MaxSizeAllowed: String(MAX_USER_METADATA) } });
  return { contentType: header(ctx, 'content-type'), headers, userMetadata };
}

export const quoteEtag = (etag: string) => `"${etag}"`;

/** Headers describing an object, for GET, HEAD and PUT responses. */
export function setObjectHeaders(ctx: Ctx, meta: ObjectMeta, withChecksums: boolean): void {
  for (const [k, v] of objectHeaders(meta, withChecksums)) ctx.reply.header(k, v);
}

/**
 * The headers describing an object, in the order they are sent; also what
 * the HEAD fast path sends (./fast-head.ts), so both answer alike.
 */
export function objectHeaders(meta: ObjectMeta, withChecksums: boolean): [string, string][] {
  const out: [string, string][] = [
    ['etag', quoteEtag(meta.etag)],
    ['last-modified', new Date(meta.created).toUTCString()],
    ['content-type', meta.content_type],
    ['accept-ranges', 'bytes'],
  ];
  for (const [k, v] of Object.entries(meta.headers)) out.push([k, v]);
  for (const [k, v] of Object.entries(meta.user_metadata)) out.push([`x-amz-meta-${k}`, metadataToHeader(v)]);
  if (meta.parts) out.push(['x-amz-mp-parts-count', String(meta.parts)]);
  out.push(['x-deltaglider-stored-as', meta.kind], ['x-deltaglider-stored-size', String(storedSize(meta))]);
  if (withChecksums) {
    for (const [alg, v] of Object.entries(meta.checksums)) out.push([`x-amz-checksum-${alg}`, v]);
    if (Object.keys(meta.checksums).length > 0) out.push(['x-amz-checksum-type', 'FULL_OBJECT']);
  }
  return out;
}

/** How the proxy stored the object (docs/s3-compatibility.md, "Extra headers"). */
export function setStorageHeaders(ctx: Ctx, meta: Pick<ObjectMeta, 'kind' | 'stored_size' | 'seeded_reference'> & { size?: number }): void {
  ctx.reply.header('x-deltaglider-stored-as', meta.kind);
  ctx.reply.header('x-deltaglider-stored-size', String(storedSize(meta)));
}

/**
 * The stored size an object reports: its first stored form's blob, plus the
 * reference when that form is a delta against the object's own bytes (the
 * upload that seeded the reference wrote it): what that write really cost
 * (docs/s3-compatibility.md).
 */
export function storedSize(meta: Pick<ObjectMeta, 'stored_size' | 'seeded_reference'> & { size?: number }): number {
  return meta.stored_size + (meta.seeded_reference ? (meta.size ?? 0) : 0);
}

function etagMatches(list: string, etag: string): boolean {
  return list.split(',').some((t) => {
    const v = t.trim().replace(/^W\//, '');
    return v === '*' || v.replace(/^"|"$/g, '') === etag;
  });
}

function parseDate(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

/**
 * Conditional GET/HEAD (RFC 9110 section 13.2.2 as S3 applies it, GetObject
 * reference): If-Match before If-Unmodified-Since (a true If-Match overrides
 * a false If-Unmodified-Since), If-None-Match before If-Modified-Since.
 * With `copy`, the x-amz-copy-source-if-* headers, where every failure is 412.
 */
export function checkConditions(ctx: Ctx, meta: ObjectMeta, copy = false): void {
  const p = copy ? 'x-amz-copy-source-' : '';
  const ifMatch = header(ctx, `${p}if-match`);
  const ifNoneMatch = header(ctx, `${p}if-none-match`);
  const ifModified = parseDate(header(ctx, `${p}if-modified-since`));
  const ifUnmodified = parseDate(header(ctx, `${p}if-unmodified-since`));
  const modified = Math.floor(Date.parse(meta.created) / 1000) * 1000;
  const failed = () => new S3Error('PreconditionFailed', undefined, { fields: { Condition: 'If-Match' } });
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, meta.etag)) throw failed();
  } else if (ifUnmodified !== undefined && modified > ifUnmodified) {
    throw failed();
  }
  const notModified = () => (copy ? failed() : new S3Error('NotModified', undefined, { headers: { etag: quoteEtag(meta.etag), 'last-modified': new Date(meta.created).toUTCString() } }));
  if (ifNoneMatch !== undefined) {
    if (etagMatches(ifNoneMatch, meta.etag)) throw notModified();
  } else if (ifModified !== undefined && modified <= ifModified) {
    throw notModified();
  }
}

/**
 * A single `bytes=` range (RFC 9110 section 14.1.2). Syntactically invalid or
 * multi-range headers are ignored, as S3 does; an unsatisfiable one is 416.
 */
export function parseRange(value: string | undefined, size: number): ByteRange | undefined {
  if (!value) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) throw invalidRange(size);
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size || size === 0) throw invalidRange(size);
  return { start, end };
}

function invalidRange(size: number): S3Error {
  return new S3Error('InvalidRange', undefined, { headers: { 'content-range': `bytes */${size}` }, fields: { ActualObjectSize: String(size) } });
}

/** Query overrides of response headers (GetObject reference, "response-*"). */
export const RESPONSE_OVERRIDES: Record<string, string> = {
  'response-content-type': 'content-type',
  'response-content-language': 'content-language',
  'response-expires': 'expires',
  'response-cache-control': 'cache-control',
  'response-content-disposition': 'content-disposition',
  'response-content-encoding': 'content-encoding',
};

/**
 * The response-* overrides of a request, checked: a value that cannot be an
 * HTTP header value (CR, LF and other control characters, or characters
 * beyond Latin-1, RFC 9110 section 5.5) is 400 InvalidArgument, as S3
 * answers, never a failure while the response is being written.
 */
export function responseOverrides(ctx: Ctx): [string, string][] {
  const out: [string, string][] = [];
  for (const [param, name] of Object.entries(RESPONSE_OVERRIDES)) {
    const v = ctx.query.get(param);
    if (v === null) continue;
    if (/[^\t\x20-\x7e\x80-\xff]/.test(v)) {
      throw new S3Error('InvalidArgument', `Header value cannot be represented using ISO-8859-1.`, { fields: { ArgumentName: param, ArgumentValue: v.replace(/[^\x20-\x7e]/g, '?') } });
    }
    out.push([name, v]);
  }
  return out;
}

/**
 * Buckets are never versioned here, so every object has the one version
 * "null" (GetObject reference, "versionId"); any other id is refused.
 */
export function checkVersionId(ctx: Ctx): void {
  const v = ctx.query.get('versionId');
  if (v !== null && v !== 'null') {
    throw new S3Error('InvalidArgument', 'Invalid version id specified', { fields: { ArgumentName: 'versionId', ArgumentValue: v } });
  }
}
