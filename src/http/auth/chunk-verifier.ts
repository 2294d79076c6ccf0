import { createHash, type Hash } from 'node:crypto';
import { S3Error } from '../../errors.js';
import type { ChunkVerifier } from '../chunked.js';
import { EMPTY_SHA256, sameSignature, scopeString, sha256hex, signString, type Scope } from './sigv4.js';

// Chunk signatures of STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] bodies (S3
// API reference, "Signature Calculations for the Authorization Header:
// Transferring Payload in Multiple Chunks"): each chunk's signature chains on
// the previous one, starting from the request's seed signature; a signed
// trailer chains on the last chunk's. Any break rejects the whole body, before
// the upload can be committed.

export class SignedChunkVerifier implements ChunkVerifier {
  private prev: string;
  private pending: { signature: string; hash: Hash } | null = null;

  constructor(
    private readonly secret: string,
    private readonly scope: Scope,
    private readonly amzDate: string,
    seedSignature: string,
    private readonly trailer_: boolean,
  ) {
    this.prev = seedSignature;
  }

  private sign(kind: 'PAYLOAD' | 'TRAILER', lines: string[]): string {
    const sts = [`AWS4-HMAC-SHA256-${kind}`, this.amzDate, scopeString(this.scope), this.prev, ...lines].join('\n');
    return signString(this.secret, this.scope, sts);
  }

  private check(signature: string, dataHash: string): void {
    const expected = this.sign('PAYLOAD', [EMPTY_SHA256, dataHash]);
    if (!sameSignature(expected, signature)) throw new S3Error('SignatureDoesNotMatch', 'The chunk signature does not match.');
    this.prev = expected;
  }

  private finishPending(): void {
    if (this.pending) {
      this.check(this.pending.signature, this.pending.hash.digest('hex'));
      this.pending = null;
    }
  }

  update(data: Buffer): void {
    this.pending?.hash.update(data);
  }

  chunk(signature: string | undefined, size: number): void {
    if (!signature) throw new S3Error('SignatureDoesNotMatch', 'A chunk has no chunk-signature.');
    this.finishPending();
    if (size === 0) this.check(signature, EMPTY_SHA256);
    else this.pending = { signature, hash: createHash('sha256') };
  }

  trailer(lines: string[], signature: string | undefined): void {
    this.finishPending();
    if (!this.trailer_) return;
    if (!signature) throw new S3Error('SignatureDoesNotMatch', 'The trailer has no x-amz-trailer-signature.');
    const canonical = lines.map((l) => `${l}\n`).join('');
    const expected = this.sign('TRAILER', [sha256hex(canonical)]);
    if (!sameSignature(expected, signature)) throw new S3Error('SignatureDoesNotMatch', 'The trailer signature does not match.');
  }
}
