import type { Ctx } from '../context.js';
import { xmlDocument } from '../xml.js';
import { commonPrefixes, contents, listParams } from './list-common.js';

/** ListObjects (version 1): GET /bucket, with marker / NextMarker. */
export async function listObjects(ctx: Ctx): Promise<void> {
  const p = listParams(ctx);
  const marker = ctx.query.get('marker') ?? '';
  const result = await ctx.engine.listObjects({ bucket: ctx.bucket, prefix: p.prefix, delimiter: p.delimiter, after: marker, maxKeys: p.maxKeys });
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(
    xmlDocument('ListBucketResult', {
      Name: ctx.bucket,
      // Version 1 encodes Delimiter, Marker, NextMarker, Key and the common
      // prefixes, but returns Prefix as sent (as AWS does; botocore decodes
      // exactly those elements).
      Prefix: p.prefix,
      Marker: p.encode(marker),
      // S3 returns NextMarker only with a delimiter; without one, clients
      // continue from the last key (ListObjects reference, "NextMarker").
      NextMarker: result.truncated && p.delimiter && result.last !== undefined ? p.encode(result.last) : undefined,
      MaxKeys: p.maxKeys,
      Delimiter: p.delimiter ? p.encode(p.delimiter) : undefined,
      EncodingType: p.encodingType,
      IsTruncated: result.truncated,
      Contents: contents(result, p, true),
      CommonPrefixes: commonPrefixes(result, p),
    }),
  );
}
