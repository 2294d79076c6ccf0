import type { IncomingMessage } from 'node:http';
import { S3Error } from '../../errors.js';
import { SignedChunkVerifier } from './chunk-verifier.js';
import type { KeyGrant } from '../../config/config.js';
import { header, isHex256, MAX_SKEW_MS, payloadMode, refuseUnsigned, unsignedAmzHeaders, type AuthMode, type KeyStore, type PayloadMode, type Principal } from './principal.js';
import { canonicalHeaders, canonicalQuery, canonicalRequest, canonicalUris, parseAmzDate, requestStringToSign, sameSignature, signString, type Scope } from './sigv4.js';

// SigV4 requests, header and presigned URL (S3 API reference,
// "Authenticating Requests (AWS Signature Version 4)"). Errors follow its
// "Error responses" for signature failures.

const MAX_PRESIGN_SECONDS = 604800;

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

export function authenticateV4(req: IncomingMessage, mode: AuthMode, authz: string | undefined, query: URLSearchParams, rawPath: string, rawQuery: string, keys: KeyStore, now: number): Principal {
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
  verifySignature(req, p, key.secretAccessKey, rawPath, rawQuery, headers, payloadHash);
  if (p.presigned) {
    const expiresMs = (p as Parsed & { expires: number }).expires * 1000;
    keys.verifiedUrls.set(`${rawPath}?${rawQuery}`, { method: req.method ?? 'GET', key, signedHeaders: p.signedHeaders, headers, signedAt, expiresMs, payloadHash });
  }
  const principal = principalOf(key, mode, payload, payloadHash, contentSha);
  if (payload === 'streaming-signed' || payload === 'streaming-signed-trailer') {
    principal.chunkVerifier = () => new SignedChunkVerifier(key.secretAccessKey, p.scope, p.amzDate, p.signature, payload === 'streaming-signed-trailer');
  }
  return principal;
}

function principalOf(key: KeyGrant, mode: AuthMode, payload: PayloadMode, payloadHash: string, contentSha: string | undefined): Principal {
  const declared = [payloadHash, contentSha].filter((h): h is string => isHex256(h)).map((h) => h.toLowerCase());
  return { key, readOnly: key.readOnly, buckets: key.buckets, payload, auth: mode, accessKeyId: key.accessKeyId, payloadSha256: [...new Set(declared)] };
}

/**
 * A presigned URL used again (KeyStore.verifiedUrls): the same method and
 * request target as one whose signature matched, so the same canonical
 * request and the same signature. What may differ since is checked as
 * authenticateV4 checks it: the validity window, unsigned x-amz-* headers,
 * the signed headers' values and the payload mode. Undefined when the URL
 * is not known or any of those fails: the full verification then runs and
 * gives the refusal its error.
 */
export function presignedAgain(req: IncomingMessage, rawUrl: string, keys: KeyStore, now: number): Principal | undefined {
  // Keyed by the request target alone, as received (its hash is computed
  // once per request string); the signature covers the method as well.
  const v = keys.verifiedUrls.get(rawUrl);
  if (!v || v.method !== req.method || v.signedAt - now > MAX_SKEW_MS || now > v.signedAt + v.expiresMs) return undefined;
  if (unsignedAmzHeaders(req.rawHeaders, v.signedHeaders).length > 0) return undefined;
  if (canonicalHeaders(req.rawHeaders, v.signedHeaders) !== v.headers) return undefined;
  const contentSha = header(req, 'x-amz-content-sha256');
  try {
    return principalOf(v.key, 'sigv4-query', payloadMode(contentSha ?? v.payloadHash, false), v.payloadHash, contentSha);
  } catch {
    return undefined;
  }
}

/** Computes the request's signature and compares it with the one sent: SignatureDoesNotMatch otherwise. */
function verifySignature(req: IncomingMessage, p: Parsed, secret: string, rawPath: string, rawQuery: string, headers: string, payloadHash: string): void {
  const cq = canonicalQuery(rawQuery, p.presigned ? 'X-Amz-Signature' : undefined);
  const signedList = p.signedHeaders.join(';');
  // On a URL the X-Amz-Content-Sha256 parameter is signed as part of the
  // query; signers put it on the payload line too (Go SDK) or keep
  // UNSIGNED-PAYLOAD there (botocore, aws4): either is accepted, and a digest
  // in it is verified against the body.
  const payloadLines = p.presigned && payloadHash !== 'UNSIGNED-PAYLOAD' ? [payloadHash, 'UNSIGNED-PAYLOAD'] : [payloadHash];
  // The first candidate is what nearly every client signs; which one matched
  // is no secret, so the search stops there.
  let matched = false;
  search: for (const uri of canonicalUris(rawPath)) {
    for (const line of payloadLines) {
      const creq = canonicalRequest(req.method ?? 'GET', uri, cq, headers, signedList, line);
      // Header values hold the bytes sent (latin1): clients sign those bytes
      // (raw UTF-8 on the wire), or the UTF-8 of the text they sent as latin1.
      // ASCII text hashes the same either way.
      const forms: (string | Buffer)[] = /[^\x00-\x7f]/.test(creq) ? [Buffer.from(creq, 'latin1'), Buffer.from(creq, 'utf8')] : [creq];
      for (const form of forms) {
        matched = sameSignature(signString(secret, p.scope, requestStringToSign(p.amzDate, p.scope, form)), p.signature);
        if (matched) break search;
      }
    }
  }
  if (!matched) throw new S3Error('SignatureDoesNotMatch', undefined, { fields: { AWSAccessKeyId: p.accessKeyId } });
}
