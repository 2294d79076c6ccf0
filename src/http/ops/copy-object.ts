import { authorize } from '../auth/authenticate.js';
import { checkKey } from '../../engine/keys.js';
import { S3Error } from '../../errors.js';
import { header, type Ctx } from '../context.js';
import { attributesFrom, checkConditions, quoteEtag, setStorageHeaders } from '../object-headers.js';
import { isoDate, xmlDocument } from '../xml.js';
import { checkStorageClass } from './put-object.js';

/** Parses x-amz-copy-source: URL-encoded "bucket/key", optionally with a leading '/'. */
export function parseCopySource(raw: string): { bucket: string; key: string } {
  let s = raw.trim();
  const q = s.indexOf('?');
  if (q >= 0) {
    const version = new URLSearchParams(s.slice(q + 1)).get('versionId');
    if (version !== null && version !== 'null') throw new S3Error('NotImplemented', 'Object versions are not supported.');
    s = s.slice(0, q);
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(s);
  } catch {
    throw new S3Error('InvalidArgument', 'Invalid copy source encoding', { fields: { ArgumentName: 'x-amz-copy-source' } });
  }
  if (decoded.startsWith('/')) decoded = decoded.slice(1);
  const slash = decoded.indexOf('/');
  if (slash <= 0 || slash === decoded.length - 1) {
    throw new S3Error('InvalidArgument', 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey', { fields: { ArgumentName: 'x-amz-copy-source' } });
  }
  return { bucket: decoded.slice(0, slash), key: decoded.slice(slash + 1) };
}

/** CopyObject: PUT /bucket/key with x-amz-copy-source. */
export async function copyObject(ctx: Ctx): Promise<void> {
  const src = parseCopySource(header(ctx, 'x-amz-copy-source')!);
  // The source is read with the same key: it needs a grant for that bucket too.
  authorize(ctx.principal, src.bucket, false);
  checkKey(ctx.key!);
  checkStorageClass(ctx);
  const directive = (header(ctx, 'x-amz-metadata-directive') ?? 'COPY').toUpperCase();
  if (directive !== 'COPY' && directive !== 'REPLACE') {
    throw new S3Error('InvalidArgument', 'Unknown metadata directive.', { fields: { ArgumentName: 'x-amz-metadata-directive', ArgumentValue: directive } });
  }
  if (directive === 'COPY' && src.bucket === ctx.bucket && src.key === ctx.key) {
    throw new S3Error('InvalidRequest', "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
  }
  const { source, result } = await ctx.engine.copyObject({
    srcBucket: src.bucket,
    srcKey: src.key,
    dstBucket: ctx.bucket,
    dstKey: ctx.key!,
    replace: directive === 'REPLACE' ? attributesFrom(ctx) : undefined,
    precondition: (m) => checkConditions(ctx, m, true),
  });
  void source;
  setStorageHeaders(ctx, result);
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(xmlDocument('CopyObjectResult', { LastModified: isoDate(result.created), ETag: quoteEtag(result.etag) }));
}
