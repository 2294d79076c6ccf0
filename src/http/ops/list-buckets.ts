import type { Ctx } from '../context.js';
import { isoDate, xmlDocument } from '../xml.js';

export const OWNER = { ID: 'deltaglider', DisplayName: 'deltaglider' };

/** ListBuckets: GET / */
export async function listBuckets(ctx: Ctx): Promise<void> {
  const grant = ctx.principal.buckets;
  const buckets = (await ctx.engine.listBuckets()).filter((b) => !grant || grant.includes(b.name));
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(
    xmlDocument('ListAllMyBucketsResult', {
      Owner: OWNER,
      Buckets: { Bucket: buckets.map((b) => ({ Name: b.name, CreationDate: isoDate(b.created), BucketRegion: ctx.config.region })) },
    }),
  );
}
