import type { Ctx } from '../context.js';

/** HeadBucket: HEAD /bucket */
export async function headBucket(ctx: Ctx): Promise<void> {
  await ctx.engine.headBucket(ctx.bucket);
  ctx.reply.header('x-amz-bucket-region', ctx.config.region);
  ctx.reply.send();
}
