import { Multipart } from '../../engine/multipart.js';
import type { ObjectMeta } from '../../engine/meta.js';
import type { ByteRange } from '../../storage/backend.js';
import { S3Error } from '../../errors.js';
import { header, type Ctx } from '../context.js';
import { checkConditions, checkVersionId, parseRange, responseOverrides, setObjectHeaders } from '../object-headers.js';

/**
 * GetObject and HeadObject: GET|HEAD /bucket/key, with a single Range,
 * conditional headers and response-* overrides (GetObject reference).
 */
export async function getObject(ctx: Ctx): Promise<void> {
  checkVersionId(ctx);
  const overrides = responseOverrides(ctx);
  const meta = await ctx.engine.headObject(ctx.bucket, ctx.key!);
  checkConditions(ctx, meta);
  const partNumber = ctx.query.get('partNumber');
  const range = partNumber !== null ? partRange(meta, Multipart.checkPartNumber(partNumber)) : parseRange(header(ctx, 'range'), meta.size);
  const whole = !range;
  setObjectHeaders(ctx, meta, whole && header(ctx, 'x-amz-checksum-mode')?.toUpperCase() === 'ENABLED');
  for (const [name, v] of overrides) ctx.reply.header(name, v);
  if (range) {
    ctx.reply.code(206);
    ctx.reply.header('content-range', `bytes ${range.start}-${range.end}/${meta.size}`);
    ctx.reply.header('content-length', String(range.end - range.start + 1));
  } else {
    ctx.reply.header('content-length', String(meta.size));
  }
  if (ctx.req.method === 'HEAD') {
    ctx.reply.send();
    return;
  }
  const body = await ctx.engine.openObject(ctx.bucket, meta, range, ctx.signal);
  body.on('error', (err) => ctx.req.log.error({ err, bucket: ctx.bucket, key: ctx.key }, 'download aborted'));
  ctx.reply.send(body);
}

/**
 * The byte range of part `n` (GetObject ?partNumber): the part as uploaded for
 * multipart objects; part 1 is the whole of any other object.
 */
function partRange(meta: ObjectMeta, n: number): ByteRange | undefined {
  const sizes = meta.part_sizes ?? [meta.size];
  if (n > sizes.length) throw new S3Error('InvalidPartNumber', undefined, { headers: { 'x-amz-mp-parts-count': String(sizes.length) } });
  if (!meta.part_sizes) return undefined;
  const start = sizes.slice(0, n - 1).reduce((a, b) => a + b, 0);
  return { start, end: start + sizes[n - 1] - 1 };
}
