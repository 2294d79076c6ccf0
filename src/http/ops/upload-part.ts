import { Multipart } from '../../engine/multipart.js';
import { receiveBody } from '../body.js';
import type { Ctx } from '../context.js';
import { quoteEtag } from '../object-headers.js';
import { MAX_SINGLE_PUT } from './put-object.js';

/** UploadPart: PUT /bucket/key?partNumber=N&uploadId=ID (parts up to 5 GiB). */
export async function uploadPart(ctx: Ctx): Promise<void> {
  const n = Multipart.checkPartNumber(ctx.query.get('partNumber'));
  const id = ctx.query.get('uploadId') ?? '';
  // Refuse before reading a body that could never be stored.
  await ctx.engine.multipart.get(ctx.bucket, ctx.key!, id);
  const { spooled, checksums } = await receiveBody(ctx, { maxSize: MAX_SINGLE_PUT });
  let part;
  try {
    part = await ctx.engine.multipart.putPart(ctx.bucket, ctx.key!, id, n, spooled, checksums);
  } finally {
    await spooled.dispose();
  }
  ctx.reply.header('etag', quoteEtag(part.md5));
  for (const [alg, v] of Object.entries(checksums)) ctx.reply.header(`x-amz-checksum-${alg}`, v);
  ctx.reply.send();
}
