import type { Ctx } from '../context.js';
import { attributesFrom } from '../object-headers.js';
import { xmlDocument } from '../xml.js';
import { checkStorageClass } from './put-object.js';

/** CreateMultipartUpload: POST /bucket/key?uploads */
export async function createMultipartUpload(ctx: Ctx): Promise<void> {
  checkStorageClass(ctx);
  const id = await ctx.engine.multipart.create(ctx.bucket, ctx.key!, attributesFrom(ctx));
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(xmlDocument('InitiateMultipartUploadResult', { Bucket: ctx.bucket, Key: ctx.key!, UploadId: id }));
}
