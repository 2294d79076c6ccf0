import type { Ctx } from '../context.js';
import { xmlDocument } from '../xml.js';

/**
 * GetBucketVersioning: GET /bucket?versioning. Versioning is not supported;
 * a bucket that never had it enabled answers with an empty configuration.
 */
export async function getBucketVersioning(ctx: Ctx): Promise<void> {
  await ctx.engine.headBucket(ctx.bucket);
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(xmlDocument('VersioningConfiguration', {}));
}
