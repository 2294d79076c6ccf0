import type { Ctx } from '../context.js';
import { isoDate, xmlDocument, type XmlNode } from '../xml.js';
import { listParams } from './list-common.js';
import { OWNER } from './list-buckets.js';
import { intParam } from './list-parts.js';

/**
 * ListMultipartUploads: GET /bucket?uploads, with prefix, delimiter,
 * key-marker, upload-id-marker and max-uploads.
 */
export async function listMultipartUploads(ctx: Ctx): Promise<void> {
  const p = listParams(ctx);
  const max = intParam(ctx, 'max-uploads', 1000, 1000);
  const keyMarker = ctx.query.get('key-marker') ?? '';
  const idMarker = ctx.query.get('upload-id-marker') ?? '';
  const uploads = (await ctx.engine.multipart.list(ctx.bucket)).filter(({ id, rec }) => {
    if (!rec.key.startsWith(p.prefix)) return false;
    if (!keyMarker) return true;
    // After key-marker; with upload-id-marker, also later uploads of that key.
    return rec.key > keyMarker || (rec.key === keyMarker && idMarker !== '' && id > idMarker);
  });
  const items: XmlNode[] = [];
  const prefixes: string[] = [];
  let truncated = false;
  let next: { key: string; id: string } | undefined;
  for (const u of uploads) {
    let cp: string | undefined;
    if (p.delimiter) {
      const at = u.rec.key.indexOf(p.delimiter, p.prefix.length);
      if (at >= 0) cp = u.rec.key.slice(0, at + p.delimiter.length);
    }
    if (cp !== undefined && prefixes.includes(cp)) continue;
    if (items.length + prefixes.length >= max) {
      truncated = true;
      break;
    }
    if (cp !== undefined) prefixes.push(cp);
    else items.push({ Key: p.encode(u.rec.key), UploadId: u.id, Initiator: OWNER, Owner: OWNER, StorageClass: 'STANDARD', Initiated: isoDate(u.rec.created) });
    next = { key: u.rec.key, id: u.id };
  }
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(
    xmlDocument('ListMultipartUploadsResult', {
      Bucket: ctx.bucket,
      KeyMarker: p.encode(keyMarker),
      UploadIdMarker: idMarker,
      NextKeyMarker: truncated && next ? p.encode(next.key) : undefined,
      NextUploadIdMarker: truncated && next ? next.id : undefined,
      Delimiter: p.delimiter ? p.encode(p.delimiter) : undefined,
      Prefix: p.encode(p.prefix),
      MaxUploads: max,
      EncodingType: p.encodingType,
      IsTruncated: truncated,
      Upload: items,
      CommonPrefixes: prefixes.map((x) => ({ Prefix: p.encode(x) })),
    }),
  );
}
