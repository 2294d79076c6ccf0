import { createHmac, timingSafeEqual } from 'node:crypto';
import { S3Error } from '../../errors.js';

// AWS Signature Version 2 as S3 applies it, for legacy clients (boto3 and
// aws-cli v1 presigning in us-east-1, `signature_version='s3'`, s3cmd with
// `signature_v2 = True`). S3 developer guide, "Signing and authenticating REST
// requests" (RESTAuthentication):
//
//   StringToSign = Verb \n Content-MD5 \n Content-Type \n Date \n
//                  CanonicalizedAmzHeaders CanonicalizedResource
//   Signature    = Base64(HMAC-SHA1(secret, UTF-8(StringToSign)))
//
// Every x-amz-* header of the request is part of CanonicalizedAmzHeaders, so
// SigV2 signs all of them by construction.

/**
 * Sub-resources that belong to the CanonicalizedResource (the developer
 * guide's list, with the response-* overrides and the later sub-resources
 * that clients such as botocore sign).
 */
const SUBRESOURCES = new Set([
  'accelerate', 'acl', 'analytics', 'cors', 'defaultObjectAcl', 'delete', 'inventory', 'lifecycle', 'location',
  'logging', 'metrics', 'notification', 'object-lock', 'partNumber', 'policy', 'replication', 'requestPayment',
  'restore', 'select', 'select-type', 'storageClass', 'tagging', 'torrent', 'uploadId', 'uploads', 'versionId',
  'versioning', 'versions', 'website',
  'response-content-type', 'response-content-language', 'response-expires', 'response-cache-control',
  'response-content-disposition', 'response-content-encoding',
]);

/** Percent-decoding to bytes, held as a latin1 string like header values. */
function safeDecode(s: string): string {
  try {
    return Buffer.from(decodeURIComponent(s), 'utf8').toString('latin1');
  } catch {
    return s;
  }
}

/**
 * The sub-resource part of the CanonicalizedResource: the parameters of
 * interest in name order, values decoded, a parameter sent without '=' kept
 * without it.
 */
export function subresources(rawQuery: string): string {
  const pairs: [string, string][] = [];
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    if (!SUBRESOURCES.has(name)) continue;
    pairs.push([name, eq < 0 ? name : `${name}=${safeDecode(part.slice(eq + 1))}`]);
  }
  // A stable sort by name only, as S3 and botocore order them.
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return pairs.length === 0 ? '' : `?${pairs.map((p) => p[1]).join('&')}`;
}

/**
 * CanonicalizedAmzHeaders from the raw header list: x-amz-* names
 * lower-cased and sorted, folded values unfolded, values trimmed, repeated
 * headers joined by ','. Values keep the bytes sent (latin1 strings).
 */
export function canonicalAmzHeaders(rawHeaders: string[]): string {
  const values = new Map<string, string[]>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (!name.startsWith('x-amz-')) continue;
    const list = values.get(name) ?? [];
    list.push(rawHeaders[i + 1].replace(/\s*\r?\n\s*/g, ' ').trim());
    values.set(name, list);
  }
  return [...values.keys()].sort().map((n) => `${n}:${values.get(n)!.join(',')}\n`).join('');
}

export interface V2Request {
  method: string;
  rawHeaders: string[];
  headers: Record<string, string | string[] | undefined>;
  /** Path as sent, without the query. */
  rawPath: string;
  rawQuery: string;
  /** '/bucket' for virtual-hosted requests, '' for path-style ones. */
  bucketPrefix: string;
}

function one(h: V2Request['headers'], name: string): string {
  const v = h[name];
  return (Array.isArray(v) ? v.join(',') : v ?? '').trim();
}

/**
 * The strings to sign a client may have signed for this request: the path
 * as sent or decoded (clients differ), and with header auth and x-amz-date
 * present, the Date line empty (as the guide says) or holding Date.
 */
export function stringsToSign(r: V2Request, dateLine: string[]): string[] {
  const head = `${r.method}\n${one(r.headers, 'content-md5')}\n${one(r.headers, 'content-type')}\n`;
  const amz = canonicalAmzHeaders(r.rawHeaders);
  const sub = subresources(r.rawQuery);
  const paths = [r.rawPath, safeDecode(r.rawPath)];
  // A bucket's resource is "/bucket/" (botocore signs it so for "/bucket").
  if (r.bucketPrefix === '' && /^\/[^/]+$/.test(r.rawPath)) paths.push(`${r.rawPath}/`);
  if (r.bucketPrefix !== '' && r.rawPath === '') paths.push('/');
  const resources = [...new Set(paths)].map((p) => `${r.bucketPrefix}${p}${sub}`);
  // botocore before 1.31 (Debian 12's python3-boto3) signs path-style
  // requests with the query it serialised first left in the path
  // ("/b?list-type=2", "/b/k?uploads?uploads"). The sub-resources still
  // follow, so everything SigV2 must sign is still signed.
  const parts = r.rawQuery.split('&').filter(Boolean).slice(0, 4);
  for (let k = 1; k <= parts.length; k++) resources.push(`${r.bucketPrefix}${r.rawPath}?${parts.slice(0, k).join('&')}${sub}`);
  const out: string[] = [];
  for (const d of dateLine) for (const res of resources) out.push(`${head}${d}\n${amz}${res}`);
  return [...new Set(out)];
}

/**
 * HMAC-SHA1 of a string to sign, base64. The string holds header values as
 * the bytes sent (latin1); `utf8Values` re-encodes them as UTF-8 instead, for
 * clients that sign the text but send it as latin1 (Python's http.client).
 */
export function signV2(secret: string, stringToSign: string, utf8Values: boolean): string {
  return createHmac('sha1', secret).update(Buffer.from(stringToSign, utf8Values ? 'utf8' : 'latin1')).digest('base64');
}

/** Constant-time comparison of two base64 signatures. */
export function sameV2Signature(expected: string, given: string): boolean {
  const x = Buffer.from(expected, 'utf8');
  const y = Buffer.from(given, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Whether any candidate string to sign, in either byte form, gives `signature`. */
export function verifyV2(secret: string, candidates: string[], signature: string): boolean {
  let ok = false;
  for (const sts of candidates) {
    const forms = /[^\x00-\x7f]/.test(sts) ? [false, true] : [false];
    // Every candidate is computed and compared, so the time taken does not
    // depend on which one (if any) matched.
    for (const utf8 of forms) ok = sameV2Signature(signV2(secret, sts, utf8), signature) || ok;
  }
  return ok;
}

export interface ParsedV2 {
  accessKeyId: string;
  signature: string;
  /** Query auth: seconds since the epoch. */
  expires?: number;
}

/** `Authorization: AWS AKID:signature`. */
export function parseV2Header(value: string): ParsedV2 {
  const rest = value.slice('AWS '.length).trim();
  const colon = rest.lastIndexOf(':');
  if (colon <= 0 || colon === rest.length - 1) {
    throw new S3Error('InvalidArgument', 'AWS authorization header is invalid.  Expected AwsAccessKeyId:signature', {
      fields: { ArgumentName: 'Authorization', ArgumentValue: 'AWS <redacted>' },
    });
  }
  return { accessKeyId: rest.slice(0, colon), signature: rest.slice(colon + 1) };
}

/** `?AWSAccessKeyId=…&Expires=…&Signature=…`. */
export function parseV2Query(q: URLSearchParams): ParsedV2 {
  const accessKeyId = q.get('AWSAccessKeyId');
  const signature = q.get('Signature');
  const expires = q.get('Expires');
  if (!accessKeyId || !signature || !expires) {
    throw new S3Error('AccessDenied', 'Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters');
  }
  if (!/^\d{1,12}$/.test(expires)) throw new S3Error('AccessDenied', 'Invalid date (should be seconds since epoch): ' + expires.slice(0, 20));
  return { accessKeyId, signature, expires: Number(expires) };
}
