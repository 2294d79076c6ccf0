import { createHash, randomBytes } from 'node:crypto';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { sdk } from './helpers/clients.js';
import { startProxy } from './helpers/proxy.js';

// Small objects are kept in memory once read and verified (src/engine/
// small-cache.ts) and then sent as one buffer, not a stream. What a client
// sees must not change with that: the same bytes, headers, ranges,
// conditional answers and overrides on the first GET (from the backend) and
// on later ones (from memory), and the new version right after an overwrite.

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const statusOf = (p: Promise<unknown>) => p.then(
  () => 200,
  (err: { $metadata?: { httpStatusCode?: number } }) => err.$metadata?.httpStatusCode,
);

t.test('small objects: first and later GETs answer alike', async (t) => {
  const proxy = await startProxy(t);
  const s3 = sdk(proxy.url);
  await s3.send(new CreateBucketCommand({ Bucket: 'small' }));
  const direct = randomBytes(4096);
  // Two versions of a small release in one deltaspace: the second is a delta.
  const v1 = release('zip', 1, 0.02);
  const v2 = release('zip', 2, 0.02);
  t.ok(v2.length < 256 * 1024, `the delta object is small (${v2.length} B)`);
  await s3.send(new PutObjectCommand({ Bucket: 'small', Key: 'd/x.bin', Body: direct, ContentType: 'text/x-test' }));
  await s3.send(new PutObjectCommand({ Bucket: 'small', Key: 'r/v1.zip', Body: v1 }));
  const put = await s3.send(new PutObjectCommand({ Bucket: 'small', Key: 'r/v2.zip', Body: v2 }));
  const head = await s3.send(new HeadObjectCommand({ Bucket: 'small', Key: 'r/v2.zip' }));
  t.equal(head.ETag, put.ETag);

  for (const [key, body, type] of [
    ['d/x.bin', direct, 'text/x-test'],
    ['r/v2.zip', v2, 'application/zip'],
  ] as const) {
    for (const round of ['first', 'second', 'third']) {
      const g = await s3.send(new GetObjectCommand({ Bucket: 'small', Key: key }));
      const bytes = await g.Body!.transformToByteArray();
      t.equal(sha(bytes), sha(body), `${key} ${round}: exact bytes`);
      t.equal(g.ContentLength, body.length, `${key} ${round}: Content-Length`);
      t.match(g.ContentType ?? '', type === 'application/zip' ? /zip|octet-stream/ : type, `${key} ${round}: Content-Type`);
      const r = await s3.send(new GetObjectCommand({ Bucket: 'small', Key: key, Range: 'bytes=100-299' }));
      t.equal(sha(await r.Body!.transformToByteArray()), sha(body.subarray(100, 300)), `${key} ${round}: range`);
      t.equal(r.ContentRange, `bytes 100-299/${body.length}`, `${key} ${round}: Content-Range`);
      const tail = await s3.send(new GetObjectCommand({ Bucket: 'small', Key: key, Range: 'bytes=-10' }));
      t.equal(Buffer.from(await tail.Body!.transformToByteArray()).toString('hex'), body.subarray(body.length - 10).toString('hex'), `${key} ${round}: suffix range`);
      const over = await s3.send(new GetObjectCommand({ Bucket: 'small', Key: key, ResponseContentType: 'application/x-over', ResponseContentDisposition: 'attachment' }));
      await over.Body!.transformToByteArray();
      t.equal(over.ContentType, 'application/x-over', `${key} ${round}: response-content-type`);
      t.equal(over.ContentDisposition, 'attachment', `${key} ${round}: response-content-disposition`);
      const etag = g.ETag!;
      t.equal(await statusOf(s3.send(new GetObjectCommand({ Bucket: 'small', Key: key, IfNoneMatch: etag }))), 304, `${key} ${round}: If-None-Match 304`);
      t.equal(await statusOf(s3.send(new GetObjectCommand({ Bucket: 'small', Key: key, IfMatch: '"00000000000000000000000000000000"' }))), 412, `${key} ${round}: If-Match 412`);
      await t.rejects(s3.send(new GetObjectCommand({ Bucket: 'small', Key: key, Range: `bytes=${body.length + 5}-` })), { name: 'InvalidRange' }, `${key} ${round}: unsatisfiable range`);
    }
  }

  // An overwrite is seen at once: the memory copy belongs to the old version's blob.
  const next = randomBytes(4000);
  await s3.send(new PutObjectCommand({ Bucket: 'small', Key: 'd/x.bin', Body: next }));
  const g = await s3.send(new GetObjectCommand({ Bucket: 'small', Key: 'd/x.bin' }));
  t.equal(sha(await g.Body!.transformToByteArray()), sha(next), 'the new version right after the overwrite');
  t.equal(g.ContentLength, next.length);
  s3.destroy();
});
