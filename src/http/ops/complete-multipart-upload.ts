import { S3Error } from '../../errors.js';
import { readSmallBody } from '../body.js';
import type { Ctx } from '../context.js';
import { toS3Error } from '../errors.js';
import { quoteEtag, setStorageHeaders } from '../object-headers.js';
import { parseXml, xmlDocument } from '../xml.js';

const KEEPALIVE_MS = 5000;

/**
 * CompleteMultipartUpload: POST /bucket/key?uploadId=ID. Assembling and
 * encoding a large object takes time, so, as S3 does, when the work outlasts a
 * few seconds the proxy answers 200 at once and sends spaces until the result
 * document, which may then be an Error document (the SDKs read it as an error).
 */
export async function completeMultipartUpload(ctx: Ctx): Promise<void> {
  const id = ctx.query.get('uploadId') ?? '';
  // Fail fast before reading the body, unless this retries a Complete that
  // succeeded (./engine/multipart.ts, COMPLETED_TTL_MS).
  await ctx.engine.multipart.get(ctx.bucket, ctx.key!, id).catch(async (err) => {
    if (!(await ctx.engine.multipart.completed(ctx.bucket, ctx.key!, id))) throw err;
  });
  const doc = parseXml((await readSmallBody(ctx)).toString('utf8'));
  const root = doc.CompleteMultipartUpload as { Part?: { PartNumber?: unknown; ETag?: unknown }[] } | undefined;
  if (!root || typeof root !== 'object' || !Array.isArray(root.Part)) throw new S3Error('MalformedXML');
  const parts = root.Part.map((p) => {
    const n = Number(String(p?.PartNumber ?? '').trim());
    if (!Number.isInteger(n) || typeof p?.ETag !== 'string') throw new S3Error('MalformedXML');
    return { number: n, etag: p.ETag.trim() };
  });

  const raw = ctx.reply.raw;
  let streaming = false;
  const timer = setInterval(() => {
    if (!streaming) {
      streaming = true;
      ctx.reply.hijack();
      raw.writeHead(200, { ...ctx.reply.getHeaders(), 'content-type': 'application/xml' } as Record<string, string>);
      raw.write('<?xml version="1.0" encoding="UTF-8"?>\n');
    } else {
      raw.write(' ');
    }
  }, KEEPALIVE_MS);
  try {
    const meta = await ctx.engine.multipart.complete(ctx.bucket, ctx.key!, id, parts, ctx.config.maxObjectSize);
    clearInterval(timer);
    const body = {
      Location: `/${ctx.bucket}/${encodeURIComponent(ctx.key!).replace(/%2F/g, '/')}`,
      Bucket: ctx.bucket,
      Key: ctx.key!,
      ETag: quoteEtag(meta.etag),
    };
    if (streaming) {
      raw.end(xmlDocument('CompleteMultipartUploadResult', body).replace(/^<\?xml[^>]*>\n/, ''));
      return;
    }
    setStorageHeaders(ctx, meta);
    ctx.reply.header('content-type', 'application/xml');
    ctx.reply.send(xmlDocument('CompleteMultipartUploadResult', body));
  } catch (err) {
    clearInterval(timer);
    if (!streaming) throw err;
    const e = toS3Error(err, ctx.req);
    raw.end(xmlDocument('Error', { Code: e.code, Message: e.message, ...e.fields, Resource: ctx.resource, RequestId: ctx.requestId }, false).replace(/^<\?xml[^>]*>\n/, ''));
  }
}
