import { S3Error } from '../../errors.js';
import { readSmallBody } from '../body.js';
import type { Ctx } from '../context.js';
import { parseXml } from '../xml.js';

/** CreateBucket: PUT /bucket, with an optional CreateBucketConfiguration body. */
export async function createBucket(ctx: Ctx): Promise<void> {
  const body = await readSmallBody(ctx, 64 * 1024);
  if (body.length > 0) {
    // The location constraint is accepted for any region: the proxy has one.
    const doc = parseXml(body.toString('utf8'));
    if (!('CreateBucketConfiguration' in doc)) throw new S3Error('MalformedXML');
  }
  await ctx.engine.createBucket(ctx.bucket);
  ctx.reply.header('location', `/${ctx.bucket}`);
  ctx.reply.send();
}
