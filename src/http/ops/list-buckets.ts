import type { Ctx } from '../context.js';
import { isoDate, xmlDocument } from '../xml.js';

export const OWNER = { ID: 'deltaglider', DisplayName: 'deltaglider' };

/** ListBuckets: GET / */
export async function listBuckets(ctx: Ctx): Promise<void> {
  const buckets = await ctx.engine.listBuckets();
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(
    xmlDocument('ListAllMyBucketsResult', {
      Owner: OWNER,
      Buckets: { Bucket: buckets.map((b) => ({ Name: b.name, CreationDate: isoDate(b.created), BucketRegion: ctx.config.region })) },
    }),
  );
}
