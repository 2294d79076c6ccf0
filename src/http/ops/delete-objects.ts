import { S3Error, isS3Error } from '../../errors.js';
import { readSmallBody } from '../body.js';
import type { Ctx } from '../context.js';
import { parseXml, xmlDocument, type XmlNode } from '../xml.js';

/** DeleteObjects: POST /bucket?delete, at most 1000 keys, per-key results. */
export async function deleteObjects(ctx: Ctx): Promise<void> {
  await ctx.engine.headBucket(ctx.bucket);
  const doc = parseXml((await readSmallBody(ctx)).toString('utf8'));
  const del = doc.Delete as { Object?: { Key?: unknown }[]; Quiet?: unknown } | undefined;
  if (!del || typeof del !== 'object' || !Array.isArray(del.Object) || del.Object.length === 0 || del.Object.length > 1000) {
    throw new S3Error('MalformedXML');
  }
  const keys = del.Object.map((o) => o?.Key);
  if (keys.some((k) => typeof k !== 'string')) throw new S3Error('MalformedXML');
  const quiet = String(del.Quiet ?? '').trim().toLowerCase() === 'true';
  const deleted: XmlNode[] = [];
  const errors: XmlNode[] = [];
  for (const key of keys as string[]) {
    try {
      await ctx.engine.deleteObject(ctx.bucket, key);
      if (!quiet) deleted.push({ Key: key });
    } catch (err) {
      const e = isS3Error(err) ? err : new S3Error('InternalError', undefined, { cause: err });
      if (!isS3Error(err)) ctx.req.log.error({ err, key }, 'delete failed');
      errors.push({ Key: key, Code: e.code, Message: e.message });
    }
  }
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(xmlDocument('DeleteResult', { Deleted: deleted, Error: errors }));
}
