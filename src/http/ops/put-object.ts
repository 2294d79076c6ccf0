import { checkKey } from '../../engine/keys.js';
import type { ObjectMeta } from '../../engine/meta.js';
import { S3Error } from '../../errors.js';
import { announcedSize, receiveBody } from '../body.js';
import { header, type Ctx } from '../context.js';
import { attributesFrom, quoteEtag, setStorageHeaders } from '../object-headers.js';

/** S3 accepts at most 5 GiB in one PUT; larger objects need multipart uploads. */
export const MAX_SINGLE_PUT = 5 * 1024 ** 3;

export const STORAGE_CLASSES = new Set([
  'STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER',
  'DEEP_ARCHIVE', 'OUTPOSTS', 'GLACIER_IR', 'SNOW', 'EXPRESS_ONEZONE',
]);

/** Checks a request's x-amz-storage-class (accepted, stored as STANDARD). */
export function checkStorageClass(ctx: Ctx): void {
  const sc = header(ctx, 'x-amz-storage-class');
  if (sc !== undefined && !STORAGE_CLASSES.has(sc)) throw new S3Error('InvalidStorageClass', undefined, { fields: { StorageClassRequested: sc } });
}

/**
 * Conditional writes (PutObject reference, "If-None-Match" / "If-Match"):
 * evaluated under the key's lock against the object being replaced.
 */
export function writeConditions(ctx: Ctx): (current: ObjectMeta | null) => void {
  const ifNoneMatch = header(ctx, 'if-none-match');
  const ifMatch = header(ctx, 'if-match');
  return (current) => {
    if (ifNoneMatch !== undefined) {
      if (ifNoneMatch.trim() !== '*') throw new S3Error('NotImplemented', 'If-None-Match on PUT supports only "*".');
      if (current) throw new S3Error('PreconditionFailed', undefined, { fields: { Condition: 'If-None-Match' } });
    }
    if (ifMatch !== undefined) {
      if (!current) throw new S3Error('NoSuchKey', undefined, { fields: { Key: ctx.key! } });
      if (ifMatch.trim().replace(/^"|"$/g, '') !== current.etag) throw new S3Error('PreconditionFailed', undefined, { fields: { Condition: 'If-Match' } });
    }
  };
}

/** PutObject: PUT /bucket/key */
export async function putObject(ctx: Ctx): Promise<void> {
  const key = ctx.key!;
  // Refuse before reading a body that could never be stored.
  checkKey(key);
  checkStorageClass(ctx);
  await ctx.engine.headBucket(ctx.bucket);
  const attrs = attributesFrom(ctx);
  const maxSize = Math.min(MAX_SINGLE_PUT, ctx.config.maxObjectSize);
  const size = announcedSize(ctx);
  // Encode while the body arrives, when the deltaspace has a reference.
  const pre = size !== undefined && size <= maxSize ? await ctx.engine.prepareDelta(ctx.bucket, key, size) : null;
  let meta;
  try {
    const { spooled, checksums } = await receiveBody(ctx, { maxSize, tee: pre?.sink });
    try {
      meta = await ctx.engine.putObject({ bucket: ctx.bucket, key, body: spooled, ...attrs, checksums, precondition: writeConditions(ctx), pre: pre ?? undefined });
    } finally {
      // Before the response: once the client has its answer, no temp file is left.
      await spooled.dispose();
    }
  } finally {
    await pre?.cancel();
  }
  ctx.reply.header('etag', quoteEtag(meta.etag));
  for (const [alg, v] of Object.entries(meta.checksums)) ctx.reply.header(`x-amz-checksum-${alg}`, v);
  setStorageHeaders(ctx, meta);
  ctx.reply.send();
}
