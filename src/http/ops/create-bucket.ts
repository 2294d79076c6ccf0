import { isS3Error, S3Error } from '../../errors.js';
import { readSmallBody } from '../body.js';
import type { Ctx } from '../context.js';
import { parseXml } from '../xml.js';

/**
 * CreateBucket: PUT /bucket, with an optional CreateBucketConfiguration
 * body. Its LocationConstraint is accepted whatever the region (the proxy
 * has one) and kept with the bucket, for GetBucketLocation.
 */
export async function createBucket(ctx: Ctx): Promise<void> {
  const body = await readSmallBody(ctx, 64 * 1024);
  let location: string | undefined;
  if (body.length > 0) {
    const doc = parseXml(body.toString('utf8'));
    const conf = doc.CreateBucketConfiguration;
    if (conf === undefined) throw new S3Error('MalformedXML');
    const lc = typeof conf === 'object' && conf !== null ? (conf as Record<string, unknown>).LocationConstraint : undefined;
    if (lc !== undefined && lc !== '' && typeof lc !== 'string') throw new S3Error('MalformedXML');
    if (typeof lc === 'string' && lc.trim() !== '') location = lc.trim();
    if (location !== undefined && !/^[A-Za-z0-9-]{1,64}$/.test(location)) {
      throw new S3Error('InvalidLocationConstraint', undefined, { fields: { LocationConstraint: location.slice(0, 64) } });
    }
  }
  try {
    await ctx.engine.createBucket(ctx.bucket, { location });
  } catch (err) {
    // CreateBucket reference: re-creating a bucket you own answers 200 in
    // us-east-1 (a legacy of the global endpoint) and 409
    // BucketAlreadyOwnedByYou in every other region.
    if (!(isS3Error(err, 'BucketAlreadyOwnedByYou') && ctx.config.region === 'us-east-1')) throw err;
  }
  ctx.reply.header('location', `/${ctx.bucket}`);
  ctx.reply.send();
}
