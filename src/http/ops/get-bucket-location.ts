import type { Ctx } from '../context.js';
import { S3_NS } from '../xml.js';

/**
 * GetBucketLocation: GET /bucket?location. us-east-1 is answered as an empty
 * constraint, as S3 does (GetBucketLocation reference).
 */
export async function getBucketLocation(ctx: Ctx): Promise<void> {
  await ctx.engine.headBucket(ctx.bucket);
  const region = ctx.config.region === 'us-east-1' ? '' : ctx.config.region;
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(`<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="${S3_NS}">${region}</LocationConstraint>`);
}
