import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { scrub } from '../src/engine/scrub.js';
import { sdk } from './helpers/clients.js';
import { blobs, startProxy, type Proxy } from './helpers/proxy.js';

// Storage format 2's promises, on whichever backend the run uses
// (DGP_TEST_BACKEND): a GET is one whole version under its own ETag while
// the key is overwritten or deleted; damage never reaches a client in a
// complete response, for full reads or ranges; Complete assembles the part
// versions it was named. Every loop is bounded in time.

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const MIB = 1 << 20;

async function readAll(s3: S3Client, bucket: string, key: string, range?: string): Promise<{ etag: string; body: Buffer; status: number }> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }), { abortSignal: AbortSignal.timeout(60_000) });
  const body = Buffer.from(await got.Body!.transformToByteArray());
  return { etag: got.ETag!.replace(/"/g, ''), body, status: got.$metadata.httpStatusCode! };
}

/** Flips one byte of a stored blob, through the backend (works on both backends). */
async function flip(p: Proxy, bucket: string, name: string, at: number): Promise<void> {
  const backend = p.app.engine.backend;
  const { body } = await backend.getStream(bucket, name);
  const chunks: Buffer[] = [];
  for await (const c of body as AsyncIterable<Buffer>) chunks.push(c);
  const buf = Buffer.concat(chunks);
  buf[at % buf.length] ^= 0x40;
  await backend.putBytes(bucket, name, buf);
}

t.test('format 2 integrity', async (t) => {
  const proxy = await startProxy(t);
  const s3 = sdk(proxy.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'integrity' }));

  await t.test('overwrites racing full and ranged GETs: every response is one whole version', async (t) => {
    for (const [key, versions] of [
      ['race/data.dat', [randomBytes(2 * MIB), randomBytes(2 * MIB)]],
      ['race/app.zip', [release('zip', 1, 0.4), release('zip', 2, 0.4)]],
    ] as const) {
      const byEtag = new Map(versions.map((v) => [md5(v), v]));
      await s3.send(new PutObjectCommand({ Bucket: 'integrity', Key: key, Body: versions[0] }));
      // Bounded: at most 60 s (a loaded machine), less once enough of both has happened.
      const until = Date.now() + 60_000;
      let writes = 0;
      const stats = { full: 0, ranged: 0, wrong: 0, aborted: 0, errors: 0 };
      const enough = () => Date.now() > until || (writes >= 8 && stats.full >= 20 && stats.ranged >= 20);
      const writer = (async () => {
        // A PUT that hangs fails the test in a minute (it once hung here: ../src/engine/spool.ts).
        while (!enough()) await s3.send(new PutObjectCommand({ Bucket: 'integrity', Key: key, Body: versions[++writes % 2] }), { abortSignal: AbortSignal.timeout(60_000) });
      })();
      const reader = async (n: number) => {
        while (!enough()) {
          const size = versions[0].length;
          const ranged = n % 2 === 1;
          const start = Math.floor(Math.random() * (size - 1));
          const end = Math.min(size - 1, start + Math.floor(Math.random() * 2 * MIB));
          try {
            const r = await readAll(s3, 'integrity', key, ranged ? `bytes=${start}-${end}` : undefined);
            const want = byEtag.get(r.etag);
            const expect = want && (ranged ? want.subarray(start, end + 1) : want);
            if (!expect || !expect.equals(r.body)) stats.wrong++;
            stats[ranged ? 'ranged' : 'full']++;
          } catch (err) {
            const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
            if (status && status >= 500) stats.errors++;
            else stats.aborted++;
          }
        }
      };
      await Promise.all([writer, reader(0), reader(1), reader(2), reader(3)]);
      t.comment(`${key}: ${writes} overwrites, ${stats.full} full and ${stats.ranged} ranged GETs`);
      t.ok(writes >= 2 && stats.full > 2 && stats.ranged > 2, 'the race ran');
      t.equal(stats.wrong, 0, `${key}: no wrong byte`);
      t.equal(stats.aborted, 0, `${key}: no aborted transfer`);
      t.equal(stats.errors, 0, `${key}: no 5xx`);
    }
  });

  await t.test('GET racing DELETE: 200 whole or 404, never 5xx', async (t) => {
    const body = randomBytes(512 * 1024);
    let ok = 0;
    let missing = 0;
    let bad = 0;
    for (let round = 0; round < 15; round++) {
      const key = `del/k${round}.bin`;
      await s3.send(new PutObjectCommand({ Bucket: 'integrity', Key: key, Body: body }));
      await Promise.all([
        s3.send(new DeleteObjectCommand({ Bucket: 'integrity', Key: key })),
        ...[0, 1, 2].map(async () => {
          try {
            const r = await readAll(s3, 'integrity', key);
            if (r.body.equals(body)) ok++;
            else bad++;
          } catch (err) {
            if ((err as { name?: string }).name === 'NoSuchKey') missing++;
            else bad++;
          }
        }),
      ]);
    }
    t.comment(`${ok} whole, ${missing} NoSuchKey`);
    t.equal(bad, 0, 'no error but NoSuchKey, no partial body');
  });

  await t.test('bit rot is never served as a complete response, whole or ranged', async (t) => {
    const plain = randomBytes(3 * MIB + 17);
    const v1 = release('zip', 11, 0.6);
    const v2 = release('zip', 12, 0.6);
    await s3.send(new PutObjectCommand({ Bucket: 'integrity', Key: 'rot/plain.dat', Body: plain }));
    await s3.send(new PutObjectCommand({ Bucket: 'integrity', Key: 'rot/z/v1.zip', Body: v1 }));
    await s3.send(new PutObjectCommand({ Bucket: 'integrity', Key: 'rot/z/v2.zip', Body: v2 }));
    const names = (await blobs(proxy, 'integrity', 'rot/')).map((b) => b.name);
    const direct = names.find((n) => /^rot\/plain\.dat\.[0-9a-f]{16}\.direct\.bin$/.test(n))!;
    const delta = names.find((n) => /^rot\/z\/v2\.zip\.[0-9a-f]{16}\.delta\.bin$/.test(n))!;
    t.ok(direct && delta, `found the blobs (${names.join(', ')})`);
    // A byte in the second MiB block of the direct object.
    await flip(proxy, 'integrity', direct, MIB + 5);
    const fails = async (key: string, range?: string) => {
      try {
        await readAll(s3, 'integrity', key, range);
        return false;
      } catch {
        return true;
      }
    };
    t.ok(await fails('rot/plain.dat'), 'direct, full GET fails');
    t.ok(await fails('rot/plain.dat', `bytes=${MIB}-${MIB + 100}`), 'direct, range over the damaged block fails');
    t.same((await readAll(s3, 'integrity', 'rot/plain.dat', 'bytes=0-999')).body, plain.subarray(0, 1000), 'a range over intact blocks is served');
    await flip(proxy, 'integrity', delta, 200);
    t.ok(await fails('rot/z/v2.zip'), 'delta, full GET fails');
    t.ok(await fails('rot/z/v2.zip', 'bytes=0-99'), 'delta, ranged GET fails');
    const report = await scrub({ backend: proxy.app.engine.backend, store: proxy.app.engine }, { bucket: 'integrity', prefix: 'rot/' });
    t.same(report.damaged.map((d) => d.key).sort(), ['rot/plain.dat', 'rot/z/v2.zip'], 'scrub finds both');
    // Damage in the reference: every delta of the deltaspace depends on it.
    const ref = names.find((n) => /^rot\/z\/reference\.[0-9a-f]{16}\.bin$/.test(n))!;
    await flip(proxy, 'integrity', ref, 1000);
    const after = await scrub({ backend: proxy.app.engine.backend, store: proxy.app.engine }, { bucket: 'integrity', prefix: 'rot/' });
    const bad = after.references.find((r) => !r.ok);
    t.ok(bad, 'scrub reports the damaged reference');
    t.same(bad?.dependents.sort(), ['rot/z/v1.zip', 'rot/z/v2.zip'], 'with every object that needs it');
  });

  await t.test('a blob removed behind the proxy is a damaged object (500), not NoSuchKey', async (t) => {
    await s3.send(new PutObjectCommand({ Bucket: 'integrity', Key: 'lost/z/v1.zip', Body: release('zip', 21, 0.6) }));
    const v2 = release('zip', 22, 0.6);
    await s3.send(new PutObjectCommand({ Bucket: 'integrity', Key: 'lost/z/v2.zip', Body: v2 }));
    const delta = (await blobs(proxy, 'integrity', 'lost/')).map((b) => b.name).find((n) => /^lost\/z\/v2\.zip\.[0-9a-f]{16}\.delta\.bin$/.test(n));
    t.ok(delta, 'found the delta blob');
    await proxy.app.engine.backend.delete('integrity', delta!);
    const err = (await readAll(s3, 'integrity', 'lost/z/v2.zip').catch((e: unknown) => e)) as { name?: string; $metadata?: { httpStatusCode?: number } };
    t.equal(err.$metadata?.httpStatusCode, 500, 'InternalError, the missing blob named in the log');
    t.equal(err.name, 'InternalError');
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'integrity', Key: 'lost/z/v2.zip' }));
    t.equal(head.ContentLength, v2.length, 'HEAD reads no blob: the key is still there');
    await s3.send(new DeleteObjectCommand({ Bucket: 'integrity', Key: 'lost/z/v2.zip' }));
    t.equal(((await readAll(s3, 'integrity', 'lost/z/v2.zip').catch((e: unknown) => e)) as { name?: string }).name, 'NoSuchKey', 'deleted, it is NoSuchKey again');
  });

  await t.test('Complete racing a part re-upload assembles the named part versions', async (t) => {
    for (let round = 0; round < 4; round++) {
      const key = `mpu/race${round}.bin`;
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'integrity', Key: key }));
      const a = randomBytes(5 * MIB);
      const b = randomBytes(5 * MIB);
      const tail = randomBytes(1000);
      const p1 = await s3.send(new UploadPartCommand({ Bucket: 'integrity', Key: key, UploadId, PartNumber: 1, Body: a }));
      const p2 = await s3.send(new UploadPartCommand({ Bucket: 'integrity', Key: key, UploadId, PartNumber: 2, Body: tail }));
      const [done] = await Promise.allSettled([
        s3.send(new CompleteMultipartUploadCommand({ Bucket: 'integrity', Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] } })),
        s3.send(new UploadPartCommand({ Bucket: 'integrity', Key: key, UploadId, PartNumber: 1, Body: Readable.from([b]), ContentLength: b.length })),
      ]);
      if (done.status === 'fulfilled') {
        const got = await readAll(s3, 'integrity', key);
        t.ok(got.body.equals(Buffer.concat([a, tail])), `round ${round}: the object holds the part named by its ETag`);
      } else {
        t.match((done.reason as Error).name, /InvalidPart|NoSuchUpload/, `round ${round}: or Complete refuses`);
      }
    }
  });

  await t.test('DeleteBucket racing PUTs never destroys an acknowledged object', async (t) => {
    let acked = 0;
    let deleted = 0;
    for (let round = 0; round < 8; round++) {
      const bucket = `racing-${round}`;
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
      const puts = [0, 1, 2].map(async (i) => {
        await new Promise((r) => setTimeout(r, i * 3));
        try {
          await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `k${i}.txt`, Body: `body ${i}` }));
          return `k${i}.txt`;
        } catch (err) {
          t.equal((err as { name?: string }).name, 'NoSuchBucket', 'a refused PUT says why');
          return null;
        }
      });
      const del = s3.send(new DeleteBucketCommand({ Bucket: bucket })).then(
        () => true,
        (err) => {
          t.equal((err as { name?: string }).name, 'BucketNotEmpty');
          return false;
        },
      );
      const [keys, gone] = [await Promise.all(puts), await del];
      const ok = keys.filter((k): k is string => k !== null);
      acked += ok.length;
      if (gone) {
        deleted++;
        t.same(ok, [], `round ${round}: the bucket went, so no PUT was acknowledged`);
      }
      for (const key of ok) {
        const got = await readAll(s3, bucket, key);
        t.equal(got.body.toString(), `body ${key.slice(1, 2)}`, `round ${round}: acknowledged ${key} reads`);
      }
    }
    t.comment(`${acked} acknowledged PUTs, ${deleted} buckets deleted`);
  });

  await t.test('damage in a stored part fails Complete', async (t) => {
    const key = 'mpu/rot.bin';
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'integrity', Key: key }));
    const p1 = await s3.send(new UploadPartCommand({ Bucket: 'integrity', Key: key, UploadId, PartNumber: 1, Body: randomBytes(5 * MIB) }));
    const part = (await blobs(proxy, '.uploads', `integrity/${UploadId}/`)).find((b) => b.name.endsWith('.bin'))!;
    await flip(proxy, '.uploads', part.name, 12345);
    await t.rejects(s3.send(new CompleteMultipartUploadCommand({ Bucket: 'integrity', Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }] } })));
    await t.rejects(s3.send(new GetObjectCommand({ Bucket: 'integrity', Key: key })), { name: 'NoSuchKey' }, 'nothing was stored');
  });
});
