import { createHash } from 'node:crypto';
import { isS3Error } from '../../errors.js';
import type { Engine } from '../engine.js';
import type { ObjectMeta } from '../meta.js';

// Migration of a bucket in the CLI layout into the proxy's native format
// (`deltaglider-proxy migrate`). Each object is read as a GET reads it
// (rebuilt and checked against the CLI's SHA-256), written through the
// destination engine like a PUT (so deltas form again under format 2), then
// read back and compared with the source's digest. An object already at the
// destination with the same SHA-256 and size is skipped, so an interrupted
// run resumes where it stopped. The source is never modified.

export interface MigrateInput {
  from: Engine;
  srcBucket: string;
  prefix: string;
  to: Engine;
  dstBucket: string;
  signal?: AbortSignal;
}

export interface MigrateProgress {
  listed: number;
  copied: number;
  skipped: number;
  failed: number;
  bytes: number;
}

export interface MigrateReport extends MigrateProgress {
  failures: { key: string; reason: string }[];
}

async function sha256Of(engine: Engine, bucket: string, meta: ObjectMeta, signal?: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  for await (const c of (await engine.openObject(bucket, meta, undefined, signal)) as AsyncIterable<Buffer>) h.update(c);
  return h.digest('hex');
}

async function already(to: Engine, bucket: string, src: ObjectMeta): Promise<boolean> {
  const dst = await to.findObject(bucket, src.key).catch(() => null);
  if (!dst || dst.size !== src.size) return false;
  return src.sha256 ? dst.sha256 === src.sha256 : !!src.md5 && dst.md5 === src.md5;
}

async function migrateOne(m: MigrateInput, src: ObjectMeta): Promise<number> {
  const stream = await m.from.openObject(m.srcBucket, src, undefined, m.signal);
  const body = await m.from.spool(stream, { signal: m.signal });
  try {
    if (src.sha256 && body.sha256 !== src.sha256) throw new Error(`read back SHA-256 ${body.sha256}, the source records ${src.sha256}`);
    const result = await m.to.putObject({
      bucket: m.dstBucket,
      key: src.key,
      body,
      contentType: src.content_type,
      headers: src.headers,
      userMetadata: src.user_metadata,
      checksums: src.checksums,
      // A multipart ETag is kept (clients may have recorded it); others are the MD5 again.
      ...(src.parts ? { etag: src.etag, parts: src.parts, ...(src.part_sizes ? { partSizes: src.part_sizes } : {}) } : {}),
    });
    const back = await sha256Of(m.to, m.dstBucket, result, m.signal);
    if (back !== body.sha256) throw new Error(`destination reads back SHA-256 ${back}, expected ${body.sha256}`);
    return body.size;
  } finally {
    await body.dispose();
  }
}

export async function migrateBucket(m: MigrateInput, progress: (p: MigrateProgress) => void = () => {}): Promise<MigrateReport> {
  const r: MigrateReport = { listed: 0, copied: 0, skipped: 0, failed: 0, bytes: 0, failures: [] };
  try {
    await m.to.headBucket(m.dstBucket);
  } catch (err) {
    if (!isS3Error(err, 'NoSuchBucket')) throw err;
    await m.to.createBucket(m.dstBucket);
  }
  let after = '';
  for (;;) {
    const page = await m.from.listObjects({ bucket: m.srcBucket, prefix: m.prefix, delimiter: '', after, maxKeys: 1000 });
    for (const src of page.objects) {
      r.listed++;
      try {
        if (await already(m.to, m.dstBucket, src)) r.skipped++;
        else {
          r.bytes += await migrateOne(m, src);
          r.copied++;
        }
      } catch (err) {
        r.failed++;
        r.failures.push({ key: src.key, reason: (err as Error).message });
      }
      progress(r);
    }
    if (!page.truncated || !page.last) break;
    after = page.last;
  }
  return r;
}
