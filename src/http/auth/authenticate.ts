import type { IncomingMessage } from 'node:http';
import type { AnonymousAccess, KeyGrant } from '../../config/config.js';
import { S3Error } from '../../errors.js';
import type { ChunkVerifier } from '../chunked.js';
import { SignedChunkVerifier } from './chunk-verifier.js';
import {
  canonicalHeaders,
  canonicalQuery,
  canonicalRequest,
  canonicalUris,
  parseAmzDate,
  requestStringToSign,
  sameSignature,
  signString,
  type Scope,
} from './sigv4.js';
import { parseV2Header, parseV2Query, stringsToSign, verifyV2 } from './sigv2.js';

// Who sent a request: verification of the Authorization header or presigned
// query parameters (SigV4, and SigV2 unless auth.sigv2 = false), giving the key's grant, and the payload mode
// the body must then satisfy. Errors follow the S3 API reference's
// "Error responses" for signature failures.

const MAX_SKEW_MS = 15 * 60 * 1000;
const MAX_PRESIGN_SECONDS = 604800;

export type AuthMode = 'anonymous' | 'sigv4' | 'sigv4-query' | 'sigv2' | 'sigv2-query';

export type PayloadMode = 'none' | 'unsigned' | 'hex' | 'streaming-signed' | 'streaming-signed-trailer' | 'streaming-unsigned-trailer';

export interface Principal {
  /** Null for anonymous requests (when the config allows them). */
  key: KeyGrant | null;
  readOnly: boolean;
  buckets?: string[];
  payload: PayloadMode;
  /** Signed aws-chunked bodies: verifies every chunk and the trailer. */
  chunkVerifier?: () => ChunkVerifier;
  /** How the request was authenticated. */
  auth: AuthMode;
  /** The key that signed it (for logs: never the signature). */
  accessKeyId?: string;
  /** SHA-256 digests (lower-case hex) the body must have: every payload hash the request declares. */
  payloadSha256: string[];
}

export class KeyStore {
  private readonly byId = new Map<string, KeyGrant>();

  constructor(
    keys: KeyGrant[],
    readonly anonymous: AnonymousAccess,
    /** Whether SigV2 (HMAC-SHA1) is accepted: `auth.sigv2`. */
    readonly sigv2 = true,
  ) {
    for (const k of keys) this.byId.set(k.accessKeyId, k);
  }

  get(id: string): KeyGrant | undefined {
    return this.byId.get(id);
  }
}

interface Parsed {
  accessKeyId: string;
  scope: Scope;
  signedHeaders: string[];
  signature: string;
  amzDate: string;
  presigned: boolean;
}

function malformed(message: string): S3Error {
  return new S3Error('AuthorizationHeaderMalformed', message);
}

function parseCredential(cred: string, bad: (m: string) => S3Error): { accessKeyId: string; scope: Scope } {
  const parts = cred.split('/');
  if (parts.length !== 5 || parts[4] !== 'aws4_request' || !/^\d{8}$/.test(parts[1])) {
    throw bad(`the Credential is malformed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".`);
  }
  if (parts[3] !== 's3') throw bad(`incorrect service "${parts[3]}". This endpoint belongs to "s3".`);
  return { accessKeyId: parts[0], scope: { date: parts[1], region: parts[2], service: parts[3] } };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function parseAuthorization(req: IncomingMessage, value: string): Parsed {
  if (!value.startsWith('AWS4-HMAC-SHA256 ')) {
    throw malformed('The authorization header is malformed; the authorization mechanism is not supported.');
  }
  const fields: Record<string, string> = {};
  for (const part of value.slice('AWS4-HMAC-SHA256 '.length).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  if (!fields.Credential || !fields.SignedHeaders || !fields.Signature) {
    throw malformed('The authorization header is malformed; it must hold Credential, SignedHeaders and Signature.');
  }
  const { accessKeyId, scope } = parseCredential(fields.Credential, malformed);
  let amzDate = header(req, 'x-amz-date');
  if (!amzDate) {
    const d = header(req, 'date');
    const t = d ? Date.parse(d) : NaN;
    if (Number.isNaN(t)) throw new S3Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
    amzDate = new Date(t).toISOString().replace(/[-:]|\.\d{3}/g, '');
  }
  if (!parseAmzDate(amzDate)) throw new S3Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
  if (amzDate.slice(0, 8) !== scope.date) {
    throw malformed(`The authorization header is malformed; Invalid credential date "${scope.date}". This date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`);
  }
  return { accessKeyId, scope, signedHeaders: fields.SignedHeaders.split(';'), signature: fields.Signature, amzDate, presigned: false };
}

function parsePresigned(q: URLSearchParams): Parsed & { expires: number } {
  const bad = (m: string) => new S3Error('AuthorizationQueryParametersError', m);
  const alg = q.get('X-Amz-Algorithm');
  if (alg !== 'AWS4-HMAC-SHA256') throw bad('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"');
  const cred = q.get('X-Amz-Credential');
  const amzDate = q.get('X-Amz-Date');
  const expires = q.get('X-Amz-Expires');
  const signed = q.get('X-Amz-SignedHeaders');
  const signature = q.get('X-Amz-Signature');
  if (!cred || !amzDate || !expires || !signed || !signature) {
    throw bad('Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.');
  }
  // S3 API reference, "Authenticating Requests: Using Query Parameters":
  // X-Amz-Expires is from 1 to 604800 seconds; anything else is a 400.
  if (!/^-?\d+$/.test(expires)) throw bad('X-Amz-Expires should be a number');
  if (Number(expires) < 1) throw bad('X-Amz-Expires must be non-negative and at least 1');
  if (Number(expires) > MAX_PRESIGN_SECONDS) throw bad('X-Amz-Expires must be less than a week (in seconds) that is 604800');
  if (!parseAmzDate(amzDate)) throw bad('X-Amz-Date must be in the ISO8601 Long Format "yyyyMMdd\'T\'HHmmss\'Z\'"');
  const { accessKeyId, scope } = parseCredential(cred, bad);
  if (amzDate.slice(0, 8) !== scope.date) throw bad('Invalid credential date. Date is not the same as X-Amz-Date.');
  return { accessKeyId, scope, signedHeaders: signed.split(';'), signature, amzDate, presigned: true, expires: Number(expires) };
}

const STREAMING: Record<string, PayloadMode> = {
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD': 'streaming-signed',
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER': 'streaming-signed-trailer',
  'STREAMING-UNSIGNED-PAYLOAD-TRAILER': 'streaming-unsigned-trailer',
};

const isHex256 = (v: string | null | undefined): boolean => !!v && /^[0-9a-f]{64}$/i.test(v);

/**
 * The payload mode a declared payload hash selects. Signed chunks need a seed
 * signature from an Authorization header: with other schemes they are
 * refused rather than decoded unverified.
 */
function payloadMode(value: string | undefined, seeded: boolean): PayloadMode {
  if (value === undefined || value === 'UNSIGNED-PAYLOAD') return 'unsigned';
  const streaming = STREAMING[value];
  if (streaming) {
    if (!seeded && streaming !== 'streaming-unsigned-trailer') throw new S3Error('InvalidRequest', `${value} needs SigV4 header authentication (an Authorization header).`);
    return streaming;
  }
  if (isHex256(value)) return 'hex';
  if (value.startsWith('STREAMING-')) throw new S3Error('NotImplemented', `Payload signing ${value} is not supported.`);
  throw new S3Error('InvalidArgument', 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-... or a SHA-256 hex digest', {
    fields: { ArgumentName: 'x-amz-content-sha256', ArgumentValue: value },
  });
}

/**
 * S3 acts on a request's x-amz-* headers only when the signature covers them
 * (AccessDenied "There were headers present in the request which were not
 * signed" otherwise). The one header AWS tolerates unsigned is
 * x-amz-content-sha256: with header auth its value is the payload hash of the
 * canonical request anyway, and elsewhere a digest in it is verified.
 */
export function unsignedAmzHeaders(rawHeaders: string[], signed: readonly string[]): string[] {
  const covered = new Set(signed);
  const out = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (name.startsWith('x-amz-') && name !== 'x-amz-content-sha256' && !covered.has(name)) out.add(name);
  }
  return [...out];
}

function refuseUnsigned(rawHeaders: string[], signed: readonly string[]): void {
  const unsigned = unsignedAmzHeaders(rawHeaders, signed);
  if (unsigned.length > 0) {
    throw new S3Error('AccessDenied', 'There were headers present in the request which were not signed', { fields: { HeadersNotSigned: unsigned.join(', ') } });
  }
}

/** Which scheme a request uses; more than one is InvalidArgument, as in S3. */
function scheme(authz: string | undefined, query: URLSearchParams): AuthMode {
  const v4Query = query.has('X-Amz-Signature') || query.has('X-Amz-Algorithm') || query.has('X-Amz-Credential');
  const v2Query = query.has('AWSAccessKeyId') || query.has('Signature');
  const found: AuthMode[] = [];
  if (authz) found.push(authz.startsWith('AWS ') ? 'sigv2' : 'sigv4');
  if (v4Query) found.push('sigv4-query');
  else if (v2Query) found.push('sigv2-query');
  if (found.length > 1) throw new S3Error('InvalidArgument', 'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified', { fields: { ArgumentName: 'Authorization' } });
  return found[0] ?? 'anonymous';
}

export interface AuthTarget {
  /** The bucket named by the Host header (virtual-hosted style), for SigV2's resource. */
  virtualBucket?: string;
}

/**
 * Authenticates a request. `rawUrl` is the request target exactly as sent,
 * since the signature covers the path and query as the client encoded them.
 */
export function authenticate(req: IncomingMessage, rawUrl: string, keys: KeyStore, now = Date.now(), target: AuthTarget = {}): Principal {
  const q = rawUrl.indexOf('?');
  const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const rawQuery = q < 0 ? '' : rawUrl.slice(q + 1);
  const query = new URLSearchParams(rawQuery);
  const authz = header(req, 'authorization');
  const mode = scheme(authz, query);
  if (mode === 'anonymous') {
    if (keys.anonymous === 'none') throw new S3Error('AccessDenied', 'Access Denied: the request is not signed');
    const declared = header(req, 'x-amz-content-sha256');
    return { key: null, readOnly: keys.anonymous === 'read-only', payload: payloadMode(declared, false), auth: mode, payloadSha256: isHex256(declared) ? [declared!.toLowerCase()] : [] };
  }
  if (mode === 'sigv2' || mode === 'sigv2-query') return authenticateV2(req, mode, authz, query, rawPath, rawQuery, keys, now, target);
  return authenticateV4(req, mode, authz, query, rawPath, rawQuery, keys, now);
}

function authenticateV4(req: IncomingMessage, mode: AuthMode, authz: string | undefined, query: URLSearchParams, rawPath: string, rawQuery: string, keys: KeyStore, now: number): Principal {
  const p = mode === 'sigv4' ? parseAuthorization(req, authz!) : parsePresigned(query);
  const key = keys.get(p.accessKeyId);
  if (!key) throw new S3Error('InvalidAccessKeyId', undefined, { fields: { AWSAccessKeyId: p.accessKeyId } });

  const signedAt = parseAmzDate(p.amzDate)!.getTime();
  if (p.presigned) {
    const expires = (p as Parsed & { expires: number }).expires;
    if (signedAt - now > MAX_SKEW_MS) throw new S3Error('AccessDenied', 'Request is not valid yet');
    if (now > signedAt + expires * 1000) {
      throw new S3Error('AccessDenied', 'Request has expired', { fields: { 'X-Amz-Expires': String(expires), Expires: new Date(signedAt + expires * 1000).toISOString(), ServerTime: new Date(now).toISOString() } });
    }
  } else if (Math.abs(now - signedAt) > MAX_SKEW_MS) {
    throw new S3Error('RequestTimeTooSkewed', undefined, { fields: { RequestTime: p.amzDate, ServerTime: new Date(now).toISOString(), MaxAllowedSkewMilliseconds: String(MAX_SKEW_MS) } });
  }

  if (!p.signedHeaders.includes('host')) throw malformed('The authorization header is malformed; the host header must be signed.');
  refuseUnsigned(req.rawHeaders, p.signedHeaders);
  const headers = canonicalHeaders(req.rawHeaders, p.signedHeaders);
  if (headers === null) throw new S3Error('AccessDenied', 'There were headers present in the request which were not signed, or a signed header is missing');
  const contentSha = header(req, 'x-amz-content-sha256');
  if (!p.presigned && contentSha === undefined) throw new S3Error('InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  // The payload hash the signature covers: the header with header auth, the
  // signed X-Amz-Content-Sha256 parameter (or UNSIGNED-PAYLOAD) on a URL.
  const payloadHash = p.presigned ? (query.get('X-Amz-Content-Sha256') ?? 'UNSIGNED-PAYLOAD') : contentSha!;
  const payload = payloadMode(p.presigned ? (contentSha ?? payloadHash) : payloadHash, !p.presigned);
  if (p.presigned && payloadHash !== 'UNSIGNED-PAYLOAD' && !isHex256(payloadHash)) payloadMode(payloadHash, false);
  const cq = canonicalQuery(rawQuery, p.presigned ? 'X-Amz-Signature' : undefined);
  const signedList = p.signedHeaders.join(';');
  // On a URL the X-Amz-Content-Sha256 parameter is signed as part of the
  // query; signers put it on the payload line too (Go SDK) or keep
  // UNSIGNED-PAYLOAD there (botocore, aws4): either is accepted, and a digest
  // in it is verified against the body.
  const payloadLines = p.presigned && payloadHash !== 'UNSIGNED-PAYLOAD' ? [payloadHash, 'UNSIGNED-PAYLOAD'] : [payloadHash];
  let matched = false;
  for (const [uri, line] of canonicalUris(rawPath).flatMap((u) => payloadLines.map((l) => [u, l] as const))) {
    const creq = canonicalRequest(req.method ?? 'GET', uri, cq, headers, signedList, line);
    // Header values hold the bytes sent (latin1): clients sign those bytes
    // (raw UTF-8 on the wire), or the UTF-8 of the text they sent as latin1.
    const forms: BufferEncoding[] = /[^\x00-\x7f]/.test(creq) ? ['latin1', 'utf8'] : ['latin1'];
    for (const form of forms) {
      const expected = signString(key.secretAccessKey, p.scope, requestStringToSign(p.amzDate, p.scope, Buffer.from(creq, form)));
      matched = sameSignature(expected, p.signature) || matched;
    }
  }
  if (!matched) throw new S3Error('SignatureDoesNotMatch', undefined, { fields: { AWSAccessKeyId: p.accessKeyId } });
  const declared = [payloadHash, contentSha].filter((h): h is string => isHex256(h)).map((h) => h.toLowerCase());
  const principal: Principal = { key, readOnly: key.readOnly, buckets: key.buckets, payload, auth: mode, accessKeyId: key.accessKeyId, payloadSha256: [...new Set(declared)] };
  if (payload === 'streaming-signed' || payload === 'streaming-signed-trailer') {
    principal.chunkVerifier = () => new SignedChunkVerifier(key.secretAccessKey, p.scope, p.amzDate, p.signature, payload === 'streaming-signed-trailer');
  }
  return principal;
}

function authenticateV2(req: IncomingMessage, mode: AuthMode, authz: string | undefined, query: URLSearchParams, rawPath: string, rawQuery: string, keys: KeyStore, now: number, target: AuthTarget): Principal {
  if (!keys.sigv2) throw new S3Error('InvalidRequest', 'The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.');
  const p = mode === 'sigv2' ? parseV2Header(authz!) : parseV2Query(query);
  const key = keys.get(p.accessKeyId);
  if (!key) throw new S3Error('InvalidAccessKeyId', undefined, { fields: { AWSAccessKeyId: p.accessKeyId } });
  let dateLines: string[];
  if (p.expires !== undefined) {
    if (now > p.expires * 1000) {
      throw new S3Error('AccessDenied', 'Request has expired', { fields: { Expires: new Date(p.expires * 1000).toISOString(), ServerTime: new Date(now).toISOString() } });
    }
    dateLines = [String(p.expires)];
  } else {
    // Header auth: x-amz-date, when present, wins over Date, and the Date
    // line of the string to sign is then empty (some clients leave Date in).
    const amzDate = header(req, 'x-amz-date');
    const date = header(req, 'date');
    const when = Date.parse(amzDate ?? date ?? '');
    if (Number.isNaN(when)) throw new S3Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
    if (Math.abs(now - when) > MAX_SKEW_MS) {
      throw new S3Error('RequestTimeTooSkewed', undefined, { fields: { RequestTime: (amzDate ?? date)!, ServerTime: new Date(now).toISOString(), MaxAllowedSkewMilliseconds: String(MAX_SKEW_MS) } });
    }
    dateLines = amzDate !== undefined ? ['', (date ?? '').trim()] : [date!.trim()];
  }
  const candidates = stringsToSign({ method: req.method ?? 'GET', rawHeaders: req.rawHeaders, headers: req.headers, rawPath, rawQuery, bucketPrefix: target.virtualBucket ? `/${target.virtualBucket}` : '' }, dateLines);
  // A '+' of a base64 signature left raw in a URL reads as a space.
  const signature = mode === 'sigv2-query' ? p.signature.replace(/ /g, '+') : p.signature;
  if (!verifyV2(key.secretAccessKey, candidates, signature)) {
    throw new S3Error('SignatureDoesNotMatch', undefined, { fields: { AWSAccessKeyId: p.accessKeyId, StringToSign: candidates[0] } });
  }
  // Every x-amz-* header is in the string to sign: a declared payload hash
  // is signed, and verified against the body.
  const contentSha = header(req, 'x-amz-content-sha256');
  return {
    key,
    readOnly: key.readOnly,
    buckets: key.buckets,
    payload: payloadMode(contentSha, false),
    auth: mode,
    accessKeyId: key.accessKeyId,
    payloadSha256: isHex256(contentSha) ? [contentSha!.toLowerCase()] : [],
  };
}

/** Refuses a request outside the key's grant (AccessDenied). */
export function authorize(principal: Principal, bucket: string, write: boolean): void {
  if (write && principal.readOnly) throw new S3Error('AccessDenied', 'Access Denied: this key is read-only');
  if (bucket && principal.buckets && !principal.buckets.includes(bucket)) throw new S3Error('AccessDenied', `Access Denied: this key may not use bucket ${bucket}`);
}
