import type { Ctx } from '../context.js';
import { escapeXml, S3_NS } from '../xml.js';

/**
 * GetBucketLocation: GET /bucket?location. The LocationConstraint the bucket
 * was created with, else the configured region; us-east-1 is answered as an
 * empty constraint, as S3 does (GetBucketLocation reference: "Buckets in
 * Region us-east-1 have a LocationConstraint of null").
 */
export async function getBucketLocation(ctx: Ctx): Promise<void> {
  const info = await ctx.engine.headBucket(ctx.bucket);
  const location = info.location ?? ctx.config.region;
  const region = location === 'us-east-1' ? '' : location;
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(`<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="${S3_NS}">${escapeXml(region)}</LocationConstraint>`);
}
