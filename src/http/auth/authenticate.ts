import type { IncomingMessage } from 'node:http';
import { S3Error } from '../../errors.js';
import { header, isHex256, payloadMode, type AuthMode, type KeyStore, type Principal } from './principal.js';
import { authenticateV2, type AuthTarget } from './verify-v2.js';
import { authenticateV4, presignedAgain } from './verify-v4.js';

// Who sent a request: verification of the Authorization header or presigned
// query parameters (SigV4, and SigV2 unless auth.sigv2 = false), giving the
// key's grant, and the payload mode the body must then satisfy.

export { KeyStore, unsignedAmzHeaders, type AuthMode, type PayloadMode, type Principal } from './principal.js';
export type { AuthTarget } from './verify-v2.js';

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

/**
 * Authenticates a request. `rawUrl` is the request target exactly as sent,
 * since the signature covers the path and query as the client encoded them;
 * `parsedQuery`, when given, is its query already parsed.
 */
export function authenticate(req: IncomingMessage, rawUrl: string, keys: KeyStore, now = Date.now(), target: AuthTarget = {}, parsedQuery?: URLSearchParams): Principal {
  const q = rawUrl.indexOf('?');
  const authz = header(req, 'authorization');
  if (q >= 0 && authz === undefined) {
    const again = presignedAgain(req, rawUrl, keys, now);
    if (again) return again;
  }
  const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const rawQuery = q < 0 ? '' : rawUrl.slice(q + 1);
  const query = parsedQuery ?? new URLSearchParams(rawQuery);
  const mode = scheme(authz, query);
  if (mode === 'anonymous') {
    if (keys.anonymous === 'none') throw new S3Error('AccessDenied', 'Access Denied: the request is not signed');
    const declared = header(req, 'x-amz-content-sha256');
    return { key: null, readOnly: keys.anonymous === 'read-only', payload: payloadMode(declared, false), auth: mode, payloadSha256: isHex256(declared) ? [declared!.toLowerCase()] : [] };
  }
  if (mode === 'sigv2' || mode === 'sigv2-query') return authenticateV2(req, mode, authz, query, rawPath, rawQuery, keys, now, target);
  return authenticateV4(req, mode, authz, query, rawPath, rawQuery, keys, now);
}

/** Refuses a request outside the key's grant (AccessDenied). */
export function authorize(principal: Principal, bucket: string, write: boolean): void {
  if (write && principal.readOnly) throw new S3Error('AccessDenied', 'Access Denied: this key is read-only');
  if (bucket && principal.buckets && !principal.buckets.includes(bucket)) throw new S3Error('AccessDenied', `Access Denied: this key may not use bucket ${bucket}`);
}
