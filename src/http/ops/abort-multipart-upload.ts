import type { Ctx } from '../context.js';

/** AbortMultipartUpload: DELETE /bucket/key?uploadId=ID */
export async function abortMultipartUpload(ctx: Ctx): Promise<void> {
  await ctx.engine.multipart.abort(ctx.bucket, ctx.key!, ctx.query.get('uploadId') ?? '');
  ctx.reply.code(204).send();
}
