import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
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
  /**
   * Presigned URLs whose signature matched (./verify-v4.ts presignedAgain).
   * A presigned URL is a bearer link made to be fetched many times while
   * it is valid; parsing and verifying it again was a fifth of the CPU of
   * a HEAD. Only matches are kept, by method and the exact request target,
   * so only a repeat of a request that was verified can hit; whatever
   * depends on the moment or on the request's headers is checked each
   * time. Bounded in entries and characters.
   */
  readonly verifiedUrls = new LRUCache<string, VerifiedUrl>({ max: 4096, maxSize: 8 << 20, maxEntrySize: 16 << 10, sizeCalculation: (v, k) => k.length + v.headers.length + 256 });

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

/** A presigned URL whose signature matched, and what its next use is checked against. */
export interface VerifiedUrl {
  /** The method signed (a presigned URL is for one). */
  method: string;
  key: KeyGrant;
  signedHeaders: string[];
  /** The canonical signed headers the signature covered. */
  headers: string;
  signedAt: number;
  expiresMs: number;
  /** The X-Amz-Content-Sha256 parameter, or UNSIGNED-PAYLOAD. */
  payloadHash: string;
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
  let out: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    // Only names starting with h or x can matter: most are passed over
    // without lower-casing them (this runs for every signed request).
    const first = rawHeaders[i].charCodeAt(0) | 0x20;
    if (first !== 0x68 && first !== 0x78) continue;
    const name = rawHeaders[i].toLowerCase();
    // SigV4 also requires host to be signed (S3 answers the same way).
    if ((name === 'host' || (name.startsWith('x-amz-') && name !== 'x-amz-content-sha256')) && !signed.includes(name)) (out ??= new Set()).add(name);
  }
  return out ? [...out] : [];
}

export function refuseUnsigned(rawHeaders: string[], signed: readonly string[]): void {
  const unsigned = unsignedAmzHeaders(rawHeaders, signed);
  if (unsigned.length > 0) {
    throw new S3Error('AccessDenied', 'There were headers present in the request which were not signed', { fields: { HeadersNotSigned: unsigned.join(', ') } });
  }
}
