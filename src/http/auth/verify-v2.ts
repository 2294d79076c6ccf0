import type { IncomingMessage } from 'node:http';
import { S3Error } from '../../errors.js';
import { header, isHex256, MAX_SKEW_MS, payloadMode, type AuthMode, type KeyStore, type Principal } from './principal.js';
import { parseV2Header, parseV2Query, stringsToSign, verifyV2 } from './sigv2.js';

// SigV2 requests, header and presigned URL (see sigv2.ts), behind auth.sigv2.

export interface AuthTarget {
  /** The bucket named by the Host header (virtual-hosted style), for SigV2's resource. */
  virtualBucket?: string;
}

export function authenticateV2(req: IncomingMessage, mode: AuthMode, authz: string | undefined, query: URLSearchParams, rawPath: string, rawQuery: string, keys: KeyStore, now: number, target: AuthTarget): Principal {
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
