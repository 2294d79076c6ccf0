import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { sdk } from './helpers/clients.js';
import { blobs, startProxy, tempDir, type Proxy } from './helpers/proxy.js';

// Buckets written by the first release (storage format 1) read as they are,
// are replaced by format 2 on overwrite, and are written again in format 1
// while storage_format = 1 (a rolling upgrade). A sidecar of a newer format
// is refused, never guessed at. On both backends (DGP_TEST_BACKEND).

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

function sidecar(key: string, body: Buffer, kind: 'delta' | 'direct', stored: Buffer, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({
    format: 1, tool: 'deltaglider-proxy/0.1.0', key, kind, size: body.length, sha256: sha(body), md5: md5(body), etag: md5(body),
    created: '2026-05-01T10:00:00.000Z', content_type: 'application/zip', headers: {}, user_metadata: { origin: 'v1' }, checksums: {}, stored_size: stored.length, ...extra,
  }));
}

/** Writes a format 1 deltaspace through the backend, as the first release left it. */
async function writeFormat1(p: Proxy, dir: string, bucket: string): Promise<{ v1: Buffer; v2: Buffer; readme: Buffer }> {
  const b = p.app.engine.backend;
  const v1 = release('zip', 1, 0.3);
  const v2 = release('zip', 2, 0.3);
  const readme = Buffer.from('format 1 direct object\n');
  const ref = path.join(dir, 'ref');
  await fsp.writeFile(ref, v1);
  const encode = async (target: Buffer, name: string) => {
    const tf = path.join(dir, `${name}.in`);
    await fsp.writeFile(tf, target);
    await execa('xdelta3', ['-e', '-A', '-f', '-D', '-B', String(64 << 20), '-9', '-s', ref, tf, path.join(dir, name)]);
    return fsp.readFile(path.join(dir, name));
  };
  const d1 = await encode(v1, 'd1');
  const d2 = await encode(v2, 'd2');
  await b.putBytes(bucket, 'old/reference.bin', v1);
  await b.putBytes(bucket, 'old/reference.bin.meta', Buffer.from(JSON.stringify({ format: 1, tool: 'deltaglider-proxy/0.1.0', kind: 'reference', size: v1.length, sha256: sha(v1), created: '2026-05-01T10:00:00.000Z', source_key: 'old/v1.zip' })));
  for (const [key, body, delta] of [['old/v1.zip', v1, d1], ['old/v2.zip', v2, d2]] as const) {
    await b.putBytes(bucket, `${key}.delta`, delta);
    await b.putBytes(bucket, `${key}.delta.meta`, sidecar(key, body, 'delta', delta, { reference_sha256: sha(v1) }));
  }
  await b.putBytes(bucket, 'old/readme.txt.direct', readme);
  await b.putBytes(bucket, 'old/readme.txt.direct.meta', sidecar('old/readme.txt', readme, 'direct', readme, { content_type: 'text/plain' }));
  return { v1, v2, readme };
}

t.test('format 1 buckets', async (t) => {
  const proxy = await startProxy(t);
  const dir = await tempDir(t);
  const s3 = sdk(proxy.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'legacy' }));
  const { v1, v2, readme } = await writeFormat1(proxy, dir, 'legacy');

  await t.test('read as they are: listing, full and ranged GETs, HEAD', async (t) => {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'legacy', Prefix: 'old/' }));
    t.same(listed.Contents?.map((c) => [c.Key, c.Size]), [['old/readme.txt', readme.length], ['old/v1.zip', v1.length], ['old/v2.zip', v2.length]]);
    for (const [key, body] of [['old/v1.zip', v1], ['old/v2.zip', v2], ['old/readme.txt', readme]] as const) {
      const got = await s3.send(new GetObjectCommand({ Bucket: 'legacy', Key: key }));
      t.equal(sha(await got.Body!.transformToByteArray()), sha(body), `${key} byte-exact`);
      t.equal(got.ETag, `"${md5(body)}"`);
      t.same(got.Metadata, { origin: 'v1' });
      const part = await s3.send(new GetObjectCommand({ Bucket: 'legacy', Key: key, Range: 'bytes=3-12' }));
      t.same(Buffer.from(await part.Body!.transformToByteArray()), body.subarray(3, 13), `${key} ranged`);
    }
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'legacy', Key: 'old/readme.txt' }));
    t.equal(head.ContentType, 'text/plain');
  });

  await t.test('an overwrite writes format 2 and removes the format 1 files', async (t) => {
    const v3 = release('zip', 3, 0.3);
    await s3.send(new PutObjectCommand({ Bucket: 'legacy', Key: 'old/v2.zip', Body: v3 }));
    const names = (await blobs(proxy, 'legacy', 'old/')).map((b) => b.name);
    t.notOk(names.includes('old/v2.zip.delta') || names.includes('old/v2.zip.delta.meta'), 'format 1 files of the key are gone');
    t.ok(names.includes('old/v2.zip.object.meta'), 'a format 2 sidecar');
    const got = await s3.send(new GetObjectCommand({ Bucket: 'legacy', Key: 'old/v2.zip' }));
    t.equal(sha(await got.Body!.transformToByteArray()), sha(v3));
    const still = await s3.send(new GetObjectCommand({ Bucket: 'legacy', Key: 'old/v1.zip' }));
    t.equal(sha(await still.Body!.transformToByteArray()), sha(v1), 'the other format 1 delta still reads');
  });

  await t.test('deletes collect both references once no delta needs them', async (t) => {
    for (const key of ['old/v1.zip', 'old/v2.zip', 'old/readme.txt']) await s3.send(new DeleteObjectCommand({ Bucket: 'legacy', Key: key }));
    t.same((await blobs(proxy, 'legacy', 'old/')).map((b) => b.name), [], 'nothing left');
  });

  await t.test('a newer format is refused, never guessed at', async (t) => {
    const b = proxy.app.engine.backend;
    await b.putBytes('legacy', 'new/v9.zip.object.meta', Buffer.from(JSON.stringify({ format: 3, key: 'new/v9.zip', size: 1, sha256: 'x', md5: 'x', etag: 'x', created: '2027-01-01T00:00:00Z', stored: [] })));
    await b.putBytes('legacy', 'new/v8.zip.object.meta', Buffer.from(JSON.stringify({ format: 2, key: 'new/v8.zip', size: 1, sha256: 'x', md5: 'x', etag: 'x', created: '2027-01-01T00:00:00Z', stored: [{ kind: 'zstd-delta', blob: 'b', size: 1, etag: 'e' }] })));
    for (const key of ['new/v9.zip', 'new/v8.zip']) {
      try {
        await s3.send(new GetObjectCommand({ Bucket: 'legacy', Key: key }));
        t.fail('served');
      } catch (err) {
        t.equal((err as S3ServiceException).$metadata.httpStatusCode, 501, `${key}: 501 NotImplemented`);
        t.match((err as Error).message, /upgrade/);
      }
    }
  });
});

t.test('storage_format = 1 writes what the first release reads', async (t) => {
  const proxy = await startProxy(t, { storageFormat: 1 });
  const s3 = sdk(proxy.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'rolling' }));
  const body = release('zip', 4, 0.2);
  await s3.send(new PutObjectCommand({ Bucket: 'rolling', Key: 'app/v4.zip', Body: body }));
  await s3.send(new PutObjectCommand({ Bucket: 'rolling', Key: 'app/v4.zip', Body: body }));
  t.same((await blobs(proxy, 'rolling')).map((b) => b.name), ['app/v4.zip.direct', 'app/v4.zip.direct.meta']);
  const doc = JSON.parse((await proxy.app.engine.backend.readSmall('rolling', 'app/v4.zip.direct.meta'))!.body.toString());
  t.match(doc, { format: 1, kind: 'direct', size: body.length, sha256: sha(body), stored_size: body.length });
  const got = await s3.send(new GetObjectCommand({ Bucket: 'rolling', Key: 'app/v4.zip' }));
  t.equal(sha(await got.Body!.transformToByteArray()), sha(body));
});
