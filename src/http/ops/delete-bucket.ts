import type { Ctx } from '../context.js';

/** DeleteBucket: DELETE /bucket (BucketNotEmpty while objects remain). */
export async function deleteBucket(ctx: Ctx): Promise<void> {
  await ctx.engine.deleteBucket(ctx.bucket);
  ctx.reply.code(204).send();
}
