import type { IncomingMessage } from 'node:http';
import type { AnonymousAccess, KeyGrant } from '../../config/config.js';
import { S3Error } from '../../errors.js';
import type { ChunkVerifier } from '../chunked.js';

// What every authentication scheme produces (the Principal), and the rules
// they share: the payload modes a declared hash selects, and S3's refusal of
// x-amz-* headers a signature does not cover.

export const MAX_SKEW_MS = 15 * 60 * 1000;

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

export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

const STREAMING: Record<string, PayloadMode> = {
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD': 'streaming-signed',
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER': 'streaming-signed-trailer',
  'STREAMING-UNSIGNED-PAYLOAD-TRAILER': 'streaming-unsigned-trailer',
};

export const isHex256 = (v: string | null | undefined): boolean => !!v && /^[0-9a-f]{64}$/i.test(v);

/**
 * The payload mode a declared payload hash selects. Signed chunks need a seed
 * signature from an Authorization header: with other schemes they are
 * refused rather than decoded unverified.
 */
export function payloadMode(value: string | undefined, seeded: boolean): PayloadMode {
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
    // SigV4 also requires host to be signed (S3 answers the same way).
    if ((name === 'host' || (name.startsWith('x-amz-') && name !== 'x-amz-content-sha256')) && !covered.has(name)) out.add(name);
  }
  return [...out];
}

export function refuseUnsigned(rawHeaders: string[], signed: readonly string[]): void {
  const unsigned = unsignedAmzHeaders(rawHeaders, signed);
  if (unsigned.length > 0) {
    throw new S3Error('AccessDenied', 'There were headers present in the request which were not signed', { fields: { HeadersNotSigned: unsigned.join(', ') } });
  }
}
