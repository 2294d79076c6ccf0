import type { ServerResponse } from 'node:http';
import { ChunkPool } from '../../engine/chunk-pool.js';
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
  const partNumber = ctx.query.get('partNumber');
  if (partNumber !== null && header(ctx, 'range') !== undefined) {
    throw new S3Error('InvalidRequest', 'Cannot specify both Range header and partNumber query parameter');
  }
  // The engine resolves the key once and streams exactly that version; the
  // check runs on it (again, should the version change before the first byte).
  const { meta, range, body, bytes } = await ctx.engine.getObject(
    ctx.bucket,
    ctx.key!,
    (m) => {
      checkConditions(ctx, m);
      return partNumber !== null ? partRange(m, Multipart.checkPartNumber(partNumber)) : parseRange(header(ctx, 'range'), m.size);
    },
    // Lazily: an AbortSignal costs more than a HEAD of a cached sidecar.
    () => ctx.signal,
    ctx.req.method !== 'HEAD',
  );
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
  if (bytes) {
    ctx.reply.send(bytes);
    return;
  }
  if (!body) {
    ctx.reply.send();
    return;
  }
  body.on('error', (err) => ctx.req.log.error({ err, bucket: ctx.bucket, key: ctx.key }, 'download aborted'));
  recycleWritten(ctx.reply.raw);
  ctx.reply.send(body);
}

/**
 * Gives each chunk of a decode's recycled buffers back once the response
 * has written it (engine/chunk-pool.ts): only then does nothing hold its
 * bytes. fastify pipes the body into the response, and a pipe passes no
 * callback to write(), so one is added here. Other chunks pass unchanged.
 */
function recycleWritten(res: ServerResponse): void {
  const write = res.write;
  res.write = function (this: ServerResponse, chunk: unknown, encoding?: unknown, cb?: unknown) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    const done = cb as ((err?: Error | null) => void) | undefined;
    if (!Buffer.isBuffer(chunk)) return write.call(this, chunk, encoding as BufferEncoding, done);
    return write.call(this, chunk, encoding as BufferEncoding, (err?: Error | null) => {
      if (!err) ChunkPool.recycle(chunk);
      done?.(err);
    });
  } as ServerResponse['write'];
}

/**
 * The byte range of part `n` (GetObject ?partNumber, "effectively performs a
 * 'ranged' GET request for the part specified"): the part as uploaded for
 * multipart objects; part 1 is the whole of any other object, answered as
 * 206 with its Content-Range as AWS does. A part beyond the object's part
 * count is 400 InvalidPart, as AWS answers (and s3-tests expect).
 */
function partRange(meta: ObjectMeta, n: number): ByteRange | undefined {
  const sizes = meta.part_sizes ?? [meta.size];
  if (n > sizes.length) throw new S3Error('InvalidPart', `The requested part number ${n} is beyond the object's ${sizes.length} part(s).`, { fields: { PartNumber: String(n) } });
  if (!meta.part_sizes) return meta.size > 0 ? { start: 0, end: meta.size - 1 } : undefined;
  const start = sizes.slice(0, n - 1).reduce((a, b) => a + b, 0);
  return { start, end: start + sizes[n - 1] - 1 };
}
