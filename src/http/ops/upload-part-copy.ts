import { Multipart } from '../../engine/multipart.js';
import { S3Error } from '../../errors.js';
import { authorize } from '../auth/authenticate.js';
import { header, type Ctx } from '../context.js';
import { checkConditions, quoteEtag } from '../object-headers.js';
import { isoDate, xmlDocument } from '../xml.js';
import { parseCopySource } from './copy-object.js';

/**
 * UploadPartCopy: PUT /bucket/key?partNumber=N&uploadId=ID with
 * x-amz-copy-source and optionally x-amz-copy-source-range: bytes=first-last.
 */
export async function uploadPartCopy(ctx: Ctx): Promise<void> {
  const n = Multipart.checkPartNumber(ctx.query.get('partNumber'));
  const id = ctx.query.get('uploadId') ?? '';
  const src = parseCopySource(header(ctx, 'x-amz-copy-source')!);
  authorize(ctx.principal, src.bucket, false);
  await ctx.engine.multipart.get(ctx.bucket, ctx.key!, id);
  const source = await ctx.engine.headObject(src.bucket, src.key);
  checkConditions(ctx, source, true);
  let range: { start: number; end: number } | undefined;
  const rawRange = header(ctx, 'x-amz-copy-source-range');
  if (rawRange !== undefined) {
    // UploadPartCopy reference, x-amz-copy-source-range: "bytes=first-last",
    // zero-based and inclusive. A malformed value is InvalidArgument; one
    // outside the source object is InvalidRange (as AWS and s3-tests answer).
    const m = /^bytes=(\d+)-(\d+)$/.exec(rawRange.trim());
    if (!m || Number(m[1]) > Number(m[2])) {
      throw new S3Error('InvalidArgument', 'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy', {
        fields: { ArgumentName: 'x-amz-copy-source-range', ArgumentValue: rawRange },
      });
    }
    if (Number(m[2]) >= source.size) {
      throw new S3Error('InvalidRange', `Range specified is not valid for source object of size: ${source.size}`, {
        fields: { RangeRequested: rawRange.trim(), ActualObjectSize: String(source.size) },
      });
    }
    range = { start: Number(m[1]), end: Number(m[2]) };
  }
  const stream = await ctx.engine.openObject(src.bucket, source, range, ctx.signal);
  const body = await ctx.engine.spool(stream, { signal: ctx.signal });
  let part;
  try {
    part = await ctx.engine.multipart.putPart(ctx.bucket, ctx.key!, id, n, body, {});
  } finally {
    await body.dispose();
  }
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(xmlDocument('CopyPartResult', { LastModified: isoDate(part.created), ETag: quoteEtag(part.md5) }));
}
