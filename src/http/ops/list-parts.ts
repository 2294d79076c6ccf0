import { S3Error } from '../../errors.js';
import type { Ctx } from '../context.js';
import { quoteEtag } from '../object-headers.js';
import { isoDate, xmlDocument } from '../xml.js';
import { OWNER } from './list-buckets.js';

function intParam(ctx: Ctx, name: string, def: number, max: number): number {
  const raw = ctx.query.get(name);
  if (raw === null) return def;
  if (!/^\d+$/.test(raw)) throw new S3Error('InvalidArgument', `${name} must be a non-negative integer`, { fields: { ArgumentName: name, ArgumentValue: raw } });
  return Math.min(Number(raw), max);
}

export { intParam };

/** ListParts: GET /bucket/key?uploadId=ID, with part-number-marker and max-parts. */
export async function listParts(ctx: Ctx): Promise<void> {
  const id = ctx.query.get('uploadId') ?? '';
  const marker = intParam(ctx, 'part-number-marker', 0, 10000);
  const max = intParam(ctx, 'max-parts', 1000, 1000);
  const all = (await ctx.engine.multipart.parts(ctx.bucket, ctx.key!, id)).filter((p) => p.number > marker);
  const page = all.slice(0, max);
  const truncated = all.length > page.length;
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(
    xmlDocument('ListPartsResult', {
      Bucket: ctx.bucket,
      Key: ctx.key!,
      UploadId: id,
      Initiator: OWNER,
      Owner: OWNER,
      StorageClass: 'STANDARD',
      PartNumberMarker: marker,
      NextPartNumberMarker: page.length ? page[page.length - 1].number : marker,
      MaxParts: max,
      IsTruncated: truncated,
      Part: page.map((p) => ({ PartNumber: p.number, LastModified: isoDate(p.created), ETag: quoteEtag(p.md5), Size: p.size })),
    }),
  );
}
