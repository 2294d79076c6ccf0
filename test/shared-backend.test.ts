import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { sdk } from './helpers/clients.js';
import { motoAvailable, startMoto } from './helpers/moto.js';
import { blobs, localData, startProxy } from './helpers/proxy.js';

// Several proxy instances sharing one S3 backend (moto_server): races that
// only conditional writes can settle.

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

t.test('two instances, one backend', { skip: await motoAvailable() }, async (t) => {
  const moto = await startMoto(t);
  const backend = await moto.backend('shared-backend', 'team/');
  const a = await startProxy(t, backend);
  const b = await startProxy(t, backend);
  const ca = sdk(a.url);
  const cb = sdk(b.url);
  t.teardown(() => {
    ca.destroy();
    cb.destroy();
  });
  await ca.send(new CreateBucketCommand({ Bucket: 'race' }));

  await t.test('first PUTs into a new deltaspace create one reference', async (t) => {
    const versions = [1, 2, 3, 4, 5, 6].map((v) => release('zip', v, 0.15));
    await Promise.all(versions.map((body, i) => (i % 2 ? cb : ca).send(new PutObjectCommand({ Bucket: 'race', Key: `app/v${i}.zip`, Body: body }))));
    const names = (await blobs(a, 'race', 'app/')).map((x) => x.name);
    t.equal(names.filter((n) => /^app\/reference\.[0-9a-f]{16}\.bin$/.test(n)).length, 1, 'one reference blob');
    t.equal(names.filter((n) => /\.zip\.[0-9a-f]{16}\.delta\.bin$/.test(n)).length, 6, `every version a delta (${names.join(', ')})`);
    for (const [i, body] of versions.entries()) {
      for (const c of [ca, cb]) {
        const got = await c.send(new GetObjectCommand({ Bucket: 'race', Key: `app/v${i}.zip` }));
        t.equal(sha(await got.Body!.transformToByteArray()), sha(body), `v${i} readable through both instances`);
      }
    }
  });

  await t.test('overwrites of one key through both instances leave one whole object', async (t) => {
    const bodies = [7, 8, 9, 10].map((v) => release('zip', v, 0.15));
    await Promise.all(bodies.map((body, i) => (i % 2 ? cb : ca).send(new PutObjectCommand({ Bucket: 'race', Key: 'app/latest.zip', Body: body }))));
    const got = await ca.send(new GetObjectCommand({ Bucket: 'race', Key: 'app/latest.zip' }));
    const s = sha(await got.Body!.transformToByteArray());
    t.ok(bodies.some((x) => sha(x) === s), 'one of the written versions, whole');
    const metas = (await blobs(a, 'race', 'app/latest.zip')).filter((x) => x.name.endsWith('.meta'));
    t.equal(metas.length, 1, 'one sidecar');
  });

  await t.test('deleting the last delta while another instance uploads keeps every object readable', async (t) => {
    await ca.send(new PutObjectCommand({ Bucket: 'race', Key: 'gc/old.zip', Body: release('zip', 1, 0.1) }));
    const fresh = [2, 3, 4].map((v) => release('zip', v, 0.1));
    await Promise.all([
      ca.send(new DeleteObjectCommand({ Bucket: 'race', Key: 'gc/old.zip' })),
      ...fresh.map((body, i) => cb.send(new PutObjectCommand({ Bucket: 'race', Key: `gc/new${i}.zip`, Body: body }))),
    ]);
    const listed = await ca.send(new ListObjectsV2Command({ Bucket: 'race', Prefix: 'gc/' }));
    t.same(listed.Contents?.map((c) => c.Key), ['gc/new0.zip', 'gc/new1.zip', 'gc/new2.zip']);
    for (const [i, body] of fresh.entries()) {
      const got = await ca.send(new GetObjectCommand({ Bucket: 'race', Key: `gc/new${i}.zip` }));
      t.equal(sha(await got.Body!.transformToByteArray()), sha(body), `new${i} readable`);
    }
  });

  await t.test("another instance's delete shows on the next first page", async (t) => {
    // 'ls/k' sorts after 'ls/k-000'... as a blob ('.' > '-'), so a page of
    // those makes the listing look 'ls/k' up on its own: that look-up must not
    // outlive the request on a shared backend.
    const keys = ['ls/k', ...Array.from({ length: 100 }, (_, i) => `ls/k-${String(i).padStart(3, '0')}`)];
    for (let i = 0; i < keys.length; i += 10) await Promise.all(keys.slice(i, i + 10).map((k) => cb.send(new PutObjectCommand({ Bucket: 'race', Key: k, Body: 'x' }))));
    const page = async () => (await ca.send(new ListObjectsV2Command({ Bucket: 'race', Prefix: 'ls/', MaxKeys: 1000 }))).Contents?.map((c) => c.Key) ?? [];
    t.equal((await page()).length, keys.length, 'all listed through A');
    await cb.send(new DeleteObjectCommand({ Bucket: 'race', Key: 'ls/k' }));
    t.notOk((await page()).includes('ls/k'), 'deleted through B, gone from A\'s next listing');
  });

  t.same(await localData(a), [], 'no local data on instance A');
  t.same(await localData(b), [], 'no local data on instance B');

  await t.test('an unreachable backend is 503, which clients retry', async (t) => {
    await moto.stop();
    const once = sdk(a.url, { maxAttempts: 1 });
    t.teardown(() => once.destroy());
    try {
      await once.send(new GetObjectCommand({ Bucket: 'race', Key: 'gc/new0.zip' }));
      t.fail('served without a backend');
    } catch (err) {
      const e = err as { name: string; $metadata?: { httpStatusCode?: number } };
      t.equal(e.$metadata?.httpStatusCode, 503);
      t.equal(e.name, 'ServiceUnavailable');
    }
  });
});

t.test('a backend that stops answering fails requests after backend.s3_idle_timeout_secs, never holds them', { skip: await motoAvailable() }, async (t) => {
  const moto = await startMoto(t);
  const p = await startProxy(t, { ...(await moto.backend('stalls')), s3IdleTimeoutSecs: 0.5 });
  const s3 = sdk(p.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'stall' }));
  await s3.send(new PutObjectCommand({ Bucket: 'stall', Key: 'a.zip', Body: 'one' }));
  moto.freeze(true);
  t.teardown(() => moto.freeze(false));
  for (const [what, send] of [
    ['GET', () => s3.send(new GetObjectCommand({ Bucket: 'stall', Key: 'b.zip' }))],
    ['PUT', () => s3.send(new PutObjectCommand({ Bucket: 'stall', Key: 'c.zip', Body: 'two' }))],
    ['LIST', () => s3.send(new ListObjectsV2Command({ Bucket: 'stall' }))],
  ] as const) {
    const t0 = Date.now();
    const err = await send().then(
      () => null,
      (e: { name: string; $metadata?: { httpStatusCode?: number } }) => e,
    );
    t.equal(err?.$metadata?.httpStatusCode, 503, `${what}: 503`);
    t.equal(err?.name, 'ServiceUnavailable');
    // Four attempts of 0.5 s each with the SDK's backoff between them.
    t.ok(Date.now() - t0 < 20_000, `${what}: answered after ${Date.now() - t0} ms`);
  }
  moto.freeze(false);
  const got = await s3.send(new GetObjectCommand({ Bucket: 'stall', Key: 'a.zip' }));
  t.equal(await got.Body!.transformToString(), 'one', 'served again once the backend answers');
});
