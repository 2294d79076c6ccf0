import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Spooled } from '../engine/spool.js';
import { S3Error } from '../errors.js';
import { AwsChunkedDecoder, type ChunkVerifier } from './chunked.js';
import { CHECKSUM_ALGORITHMS, isChecksumAlgorithm, newChecksum, type ChecksumAlgorithm } from './checksums.js';
import { header, type Ctx } from './context.js';
import { guardedBody } from './timeouts.js';

// Request bodies: aws-chunked decoding, length checks, and every integrity
// check S3 applies to an upload (Content-MD5, x-amz-content-sha256,
// x-amz-checksum-* in a header or a trailer), all computed in the single pass
// that spools the body to a temp file.

export interface ReceivedBody {
  spooled: Spooled;
  /** Checksums to store with the object (algorithm -> base64). */
  checksums: Record<string, string>;
}

export interface BodyOptions {
  maxSize: number;
  /** A second consumer of the decoded bytes (see Engine.prepareDelta). */
  tee?: NodeJS.WritableStream;
}

/** The size of the decoded body announced by the request, if any. */
export function announcedSize(ctx: Ctx): number | undefined {
  const v = isAwsChunked(ctx) ? header(ctx, 'x-amz-decoded-content-length') : header(ctx, 'content-length');
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** The aws-chunked decoder for a request, verifying chunk signatures when signed. */
function chunkDecoder(ctx: Ctx): AwsChunkedDecoder {
  const verifier: ChunkVerifier | undefined = ctx.principal.chunkVerifier?.();
  return new AwsChunkedDecoder(verifier);
}

/**
 * Every payload hash the request declares (x-amz-content-sha256, or the
 * signed X-Amz-Content-Sha256 of a presigned URL) must be the body's SHA-256.
 */
function checkContentSha(ctx: Ctx, sha256: string): void {
  const contentSha = header(ctx, 'x-amz-content-sha256');
  const declared = [...ctx.principal.payloadSha256];
  if (contentSha && /^[0-9a-f]{64}$/i.test(contentSha)) declared.push(contentSha.toLowerCase());
  for (const d of declared) {
    if (d !== sha256) {
      throw new S3Error('XAmzContentSHA256Mismatch', undefined, {
        fields: { ClientComputedContentSHA256: d, S3ComputedContentSHA256: sha256 },
      });
    }
  }
}

const CHECKSUM_NAME: Record<ChecksumAlgorithm, string> = { crc32: 'CRC32', crc32c: 'CRC32C', crc64nvme: 'CRC64NVME', sha1: 'SHA1', sha256: 'SHA256' };

export function isAwsChunked(ctx: Ctx): boolean {
  const sha = header(ctx, 'x-amz-content-sha256') ?? '';
  return sha.startsWith('STREAMING-') || /(^|,)\s*aws-chunked\s*(,|$)/i.test(header(ctx, 'content-encoding') ?? '');
}

function parseLength(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim())) throw new S3Error('InvalidArgument', `${name} must be a non-negative integer.`, { fields: { ArgumentName: name } });
  return Number(v);
}

export async function receiveBody(ctx: Ctx, opts: BodyOptions): Promise<ReceivedBody> {
  const chunked = isAwsChunked(ctx);
  const contentLength = parseLength(header(ctx, 'content-length'), 'Content-Length');
  const decodedLength = parseLength(header(ctx, 'x-amz-decoded-content-length'), 'x-amz-decoded-content-length');
  const expected = chunked ? decodedLength : contentLength;
  if (expected !== undefined && expected > opts.maxSize) {
    throw new S3Error('EntityTooLarge', undefined, { fields: { ProposedSize: String(expected), MaxSizeAllowed: String(opts.maxSize) } });
  }

  // Which checksums to compute: those sent as headers, announced as trailers
  // (x-amz-trailer), or requested by algorithm (x-amz-sdk-checksum-algorithm),
  // which S3 then stores with the object.
  const wanted = new Set<ChecksumAlgorithm>();
  const fromHeaders: Partial<Record<ChecksumAlgorithm, string>> = {};
  for (const alg of CHECKSUM_ALGORITHMS) {
    const v = header(ctx, `x-amz-checksum-${alg}`);
    if (v !== undefined) {
      wanted.add(alg);
      fromHeaders[alg] = v;
    }
  }
  const trailerNames = (header(ctx, 'x-amz-trailer') ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const t of trailerNames) {
    const alg = t.replace(/^x-amz-checksum-/, '');
    if (!t.startsWith('x-amz-checksum-') || !isChecksumAlgorithm(alg)) {
      throw new S3Error('InvalidRequest', `Unsupported trailer ${t}.`);
    }
    wanted.add(alg);
  }
  const sdkAlg = (header(ctx, 'x-amz-sdk-checksum-algorithm') ?? header(ctx, 'x-amz-checksum-algorithm'))?.toLowerCase();
  if (sdkAlg) {
    if (!isChecksumAlgorithm(sdkAlg)) throw new S3Error('InvalidRequest', `Checksum algorithm ${sdkAlg} is not supported.`);
    wanted.add(sdkAlg);
  }

  const md5Header = header(ctx, 'content-md5');
  if (md5Header !== undefined && Buffer.from(md5Header, 'base64').length !== 16) throw new S3Error('InvalidDigest');

  const raw = guardedBody(ctx);
  let body: Readable = raw;
  let decoder: AwsChunkedDecoder | undefined;
  if (chunked) {
    decoder = chunkDecoder(ctx);
    raw.on('error', (err) => decoder!.destroy(err));
    body = raw.pipe(decoder);
  }
  const extra = Object.fromEntries([...wanted].map((alg) => [alg, newChecksum(alg)]));
  const spooled = await ctx.engine.spool(body, { extra, maxSize: opts.maxSize, signal: ctx.signal, tee: opts.tee });
  try {
    if (expected !== undefined && spooled.size !== expected) throw new S3Error('IncompleteBody');
    if (md5Header !== undefined && Buffer.from(md5Header, 'base64').toString('hex') !== spooled.md5) {
      throw new S3Error('BadDigest', 'The Content-MD5 you specified did not match what was received.');
    }
    checkContentSha(ctx, spooled.sha256);
    const checksums: Record<string, string> = {};
    for (const alg of wanted) {
      const given = fromHeaders[alg] ?? decoder?.trailers[`x-amz-checksum-${alg}`];
      const computed = spooled.extra[alg];
      if (given !== undefined && given !== computed) {
        throw new S3Error('BadDigest', `The ${CHECKSUM_NAME[alg]} you specified did not match the calculated checksum.`);
      }
      checksums[alg] = computed;
    }
    return { spooled, checksums };
  } catch (err) {
    await spooled.dispose();
    throw err;
  }
}

/** Reads a small request body (XML documents) with a size cap, decoding aws-chunked. */
export async function readSmallBody(ctx: Ctx, limit = 2 * 1024 * 1024): Promise<Buffer> {
  const raw = guardedBody(ctx);
  let body: Readable = raw;
  if (isAwsChunked(ctx)) {
    const decoder = chunkDecoder(ctx);
    raw.on('error', (err) => decoder.destroy(err));
    body = raw.pipe(decoder);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) throw new S3Error('MalformedXML', 'The request body is too large.');
    chunks.push(c);
  }
  const buf = Buffer.concat(chunks);
  const md5 = header(ctx, 'content-md5');
  if (md5 !== undefined && createHash('md5').update(buf).digest('base64') !== md5) throw new S3Error('BadDigest');
  checkContentSha(ctx, createHash('sha256').update(buf).digest('hex'));
  return buf;
}
