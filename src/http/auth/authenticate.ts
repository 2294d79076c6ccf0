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

// Who sent a request: verification of the Authorization header or presigned
// query parameters (SigV4 only), giving the key's grant, and the payload mode
// the body must then satisfy. Errors follow the S3 API reference's
// "Error responses" for signature failures.

const MAX_SKEW_MS = 15 * 60 * 1000;
const MAX_PRESIGN_SECONDS = 604800;

export type PayloadMode = 'none' | 'unsigned' | 'hex' | 'streaming-signed' | 'streaming-signed-trailer' | 'streaming-unsigned-trailer';

export interface Principal {
  /** Null for anonymous requests (when the config allows them). */
  key: KeyGrant | null;
  readOnly: boolean;
  buckets?: string[];
  payload: PayloadMode;
  /** Signed aws-chunked bodies: verifies every chunk and the trailer. */
  chunkVerifier?: () => ChunkVerifier;
}

export class KeyStore {
  private readonly byId = new Map<string, KeyGrant>();

  constructor(keys: KeyGrant[], readonly anonymous: AnonymousAccess) {
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
    if (value.startsWith('AWS ')) throw new S3Error('InvalidRequest', 'The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.');
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
  if (!/^\d+$/.test(expires) || Number(expires) > MAX_PRESIGN_SECONDS) throw bad('X-Amz-Expires must be less than a week (in seconds) that is 604800');
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

function payloadMode(value: string | undefined, presigned: boolean): PayloadMode {
  if (value === undefined) {
    if (presigned) return 'unsigned';
    throw new S3Error('InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  }
  if (value === 'UNSIGNED-PAYLOAD') return 'unsigned';
  if (STREAMING[value]) return STREAMING[value];
  if (/^[0-9a-f]{64}$/i.test(value)) return 'hex';
  if (value.startsWith('STREAMING-')) throw new S3Error('NotImplemented', `Payload signing ${value} is not supported.`);
  throw new S3Error('InvalidArgument', 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-... or a SHA-256 hex digest', {
    fields: { ArgumentName: 'x-amz-content-sha256', ArgumentValue: value },
  });
}

/**
 * Authenticates a request. `rawUrl` is the request target exactly as sent,
 * since the signature covers the path and query as the client encoded them.
 */
export function authenticate(req: IncomingMessage, rawUrl: string, keys: KeyStore, now = Date.now()): Principal {
  const q = rawUrl.indexOf('?');
  const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const rawQuery = q < 0 ? '' : rawUrl.slice(q + 1);
  const query = new URLSearchParams(rawQuery);
  const authz = header(req, 'authorization');
  const presigned = query.has('X-Amz-Signature') || query.has('X-Amz-Algorithm') || query.has('X-Amz-Credential');
  if (!authz && !presigned) {
    if (keys.anonymous === 'none') throw new S3Error('AccessDenied', 'Access Denied: the request is not signed');
    return { key: null, readOnly: keys.anonymous === 'read-only', payload: 'unsigned' };
  }
  if (authz && presigned) throw new S3Error('InvalidArgument', 'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified');
  const p = authz ? parseAuthorization(req, authz) : parsePresigned(query);
  const key = keys.get(p.accessKeyId);
  if (!key) throw new S3Error('InvalidAccessKeyId', undefined, { fields: { AWSAccessKeyId: p.accessKeyId } });

  const signedAt = parseAmzDate(p.amzDate)!.getTime();
  if (p.presigned) {
    const expires = (p as Parsed & { expires: number }).expires;
    if (signedAt - now > MAX_SKEW_MS) throw new S3Error('AccessDenied', 'Request is not valid yet');
    if (now > signedAt + expires * 1000) {
      throw new S3Error('AccessDenied', 'Request has expired', { fields: { Expires: new Date(signedAt + expires * 1000).toISOString(), ServerTime: new Date(now).toISOString() } });
    }
  } else if (Math.abs(now - signedAt) > MAX_SKEW_MS) {
    throw new S3Error('RequestTimeTooSkewed', undefined, { fields: { RequestTime: p.amzDate, ServerTime: new Date(now).toISOString(), MaxAllowedSkewMilliseconds: String(MAX_SKEW_MS) } });
  }

  if (!p.signedHeaders.includes('host')) throw malformed('The authorization header is malformed; the host header must be signed.');
  const headers = canonicalHeaders(req.rawHeaders, p.signedHeaders);
  if (headers === null) throw new S3Error('AccessDenied', 'There were headers present in the request which were not signed, or a signed header is missing');
  const contentSha = header(req, 'x-amz-content-sha256');
  const mode = payloadMode(contentSha, p.presigned);
  const payloadHash = p.presigned ? (query.get('X-Amz-Content-Sha256') ?? 'UNSIGNED-PAYLOAD') : contentSha!;
  const cq = canonicalQuery(rawQuery, p.presigned ? 'X-Amz-Signature' : undefined);
  const signedList = p.signedHeaders.join(';');
  let expected = '';
  let matched = false;
  for (const uri of canonicalUris(rawPath)) {
    const creq = canonicalRequest(req.method ?? 'GET', uri, cq, headers, signedList, payloadHash);
    expected = signString(key.secretAccessKey, p.scope, requestStringToSign(p.amzDate, p.scope, creq));
    if (sameSignature(expected, p.signature)) {
      matched = true;
      break;
    }
  }
  if (!matched) throw new S3Error('SignatureDoesNotMatch', undefined, { fields: { AWSAccessKeyId: p.accessKeyId } });
  const principal: Principal = { key, readOnly: key.readOnly, buckets: key.buckets, payload: mode };
  if (mode === 'streaming-signed' || mode === 'streaming-signed-trailer') {
    principal.chunkVerifier = () => new SignedChunkVerifier(key.secretAccessKey, p.scope, p.amzDate, p.signature, mode === 'streaming-signed-trailer');
  }
  return principal;
}

/** Refuses a request outside the key's grant (AccessDenied). */
export function authorize(principal: Principal, bucket: string, write: boolean): void {
  if (write && principal.readOnly) throw new S3Error('AccessDenied', 'Access Denied: this key is read-only');
  if (bucket && principal.buckets && !principal.buckets.includes(bucket)) throw new S3Error('AccessDenied', `Access Denied: this key may not use bucket ${bucket}`);
}
