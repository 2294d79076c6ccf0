import { S3Error } from '../../errors.js';
import { compareKeys } from '../../engine/listing.js';
import type { Ctx } from '../context.js';
import { xmlDocument } from '../xml.js';
import { commonPrefixes, contents, listParams } from './list-common.js';

// The continuation token is opaque to clients: the last key or common prefix
// returned, so a listing resumes correctly even if keys change in between.
const encodeToken = (last: string) => Buffer.from(`1:${last}`).toString('base64url');

function decodeToken(token: string): string {
  const s = Buffer.from(token, 'base64url').toString('utf8');
  if (!s.startsWith('1:') || Buffer.from(s).toString('base64url') !== token) {
    throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect', { fields: { ArgumentName: 'continuation-token' } });
  }
  return s.slice(2);
}

/** ListObjectsV2: GET /bucket?list-type=2 */
export async function listObjectsV2(ctx: Ctx): Promise<void> {
  const p = listParams(ctx);
  const token = ctx.query.get('continuation-token');
  const startAfter = ctx.query.get('start-after') ?? '';
  const fromToken = token !== null ? decodeToken(token) : '';
  const after = compareKeys(fromToken, startAfter) > 0 ? fromToken : startAfter;
  const result = await ctx.engine.listObjects({ bucket: ctx.bucket, prefix: p.prefix, delimiter: p.delimiter, after, maxKeys: p.maxKeys });
  const keyCount = result.objects.length + result.commonPrefixes.length;
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(
    xmlDocument('ListBucketResult', {
      Name: ctx.bucket,
      Prefix: p.encode(p.prefix),
      Delimiter: p.delimiter ? p.encode(p.delimiter) : undefined,
      MaxKeys: p.maxKeys,
      EncodingType: p.encodingType,
      KeyCount: keyCount,
      IsTruncated: result.truncated,
      ContinuationToken: token ?? undefined,
      NextContinuationToken: result.truncated && result.last !== undefined ? encodeToken(result.last) : undefined,
      StartAfter: startAfter ? p.encode(startAfter) : undefined,
      Contents: contents(result, p, ctx.query.get('fetch-owner') === 'true'),
      CommonPrefixes: commonPrefixes(result, p),
    }),
  );
}
