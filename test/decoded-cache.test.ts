import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { DecodedCache } from '../src/engine/decoded-cache.js';
import { scrub } from '../src/engine/scrub.js';
import { sdk } from './helpers/clients.js';
import { blobs, startProxy, tempDir } from './helpers/proxy.js';
import { until } from './helpers/raw.js';

// The decoded cache (src/engine/decoded-cache.ts): one decode of a delta
// version serves every full and ranged read of it (from the second whole
// read on: the first decodes straight to its client), every read is still
// verified, a damaged decode is dropped, and files go when entries go.

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const collect = async (r: Readable) => {
  const c: Buffer[] = [];
  for await (const x of r) c.push(x as Buffer);
  return Buffer.concat(c);
};

async function get(s3: S3Client, key: string, range?: string): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket: 'dcache', Key: key, Range: range }), { abortSignal: AbortSignal.timeout(60_000) });
  return Buffer.from(await r.Body!.transformToByteArray());
}

t.test('unit: readers share one decode; files go with their entries', async (t) => {
  const dir = await tempDir(t);
  const cache = new DecodedCache(dir, 3000);
  const body = randomBytes(1000);
  let decodes = 0;
  // A decode that trickles out, so readers join it while it runs.
  const decode = async () => {
    decodes++;
    return Readable.from((async function* () {
      for (let i = 0; i < 1000; i += 100) {
        await new Promise((r) => setTimeout(r, 5));
        yield body.subarray(i, i + 100);
      }
    })());
  };
  const reads = await Promise.all([
    cache.range('a', 1000, decode, 0, 999).then(collect),
    cache.range('a', 1000, decode, 10, 19).then(collect),
    cache.range('a', 1000, decode, 900, 999).then(collect),
  ]);
  t.equal(decodes, 1, 'one decode for three readers');
  t.same(reads, [body, body.subarray(10, 20), body.subarray(900)], 'each got its bytes');
  t.same(await collect(await cache.range('a', 1000, decode, 0, 999)), body, 'a later read is served from the file');
  t.equal(decodes, 1, 'without decoding again');
  // Three more entries of 1000 bytes evict 'a' (budget 3000).
  for (const id of ['b', 'c', 'd']) await collect(await cache.range(id, 1000, decode, 0, 999));
  await new Promise((r) => setTimeout(r, 50));
  t.equal((await fsp.readdir(dir)).length, 3, 'the evicted entry left no file');
  cache.drop('d');
  await new Promise((r) => setTimeout(r, 50));
  t.equal((await fsp.readdir(dir)).length, 2, 'a dropped entry leaves no file');
  // A decode that fails: every reader that joined it fails, and the next read decodes again.
  const broken = async () => Readable.from((async function* () {
    yield body.subarray(0, 100);
    await new Promise((r) => setTimeout(r, 10));
    throw new Error('decoder died');
  })());
  const failed = await Promise.allSettled([cache.range('e', 1000, broken, 0, 999).then(collect), cache.range('e', 1000, broken, 500, 599).then(collect)]);
  t.same(failed.map((f) => f.status), ['rejected', 'rejected'], 'both readers of a failed decode fail');
  t.same(await collect(await cache.range('e', 1000, decode, 0, 999)), body, 'the next read decodes afresh');
  cache.clear();
});

t.test('unit: readers at the frontier of the decode take chunks from memory; one that falls behind reads the file', async (t) => {
  const dir = await tempDir(t);
  const cache = new DecodedCache(dir, 64 << 20);
  const size = 8 << 20;
  const body = randomBytes(size);
  let decodes = 0;
  const decode = async () => {
    decodes++;
    return Readable.from((async function* () {
      for (let i = 0; i < size; i += 256 << 10) {
        if (i % (1 << 20) === 0) await new Promise((r) => setTimeout(r, 5));
        yield body.subarray(i, i + (256 << 10));
      }
    })());
  };
  // A reader that stops for a while in the middle (its buffer fills, it
  // leaves the frontier, reads the file, and may catch up again).
  const stalling = async (s: Readable) => {
    const chunks: Buffer[] = [];
    let got = 0;
    for await (const c of s) {
      chunks.push(c as Buffer);
      got += (c as Buffer).length;
      if (got > 2 << 20 && got < (2 << 20) + (300 << 10)) await new Promise((r) => setTimeout(r, 100));
    }
    return Buffer.concat(chunks);
  };
  const [fast, slow, ranged, tail] = await Promise.all([
    cache.range('x', size, decode, 0, size - 1).then(collect),
    cache.range('x', size, decode, 0, size - 1).then(stalling),
    cache.range('x', size, decode, 3_000_001, 5_000_000).then(collect),
    cache.range('x', size, decode, size - 10, size - 1).then(collect),
  ]);
  t.equal(decodes, 1, 'one decode');
  t.ok(fast.equals(body), 'a reader that keeps up: exact bytes');
  t.ok(slow.equals(body), 'a reader that stalls midway: exact bytes');
  t.ok(ranged.equals(body.subarray(3_000_001, 5_000_001)), 'a range joining mid-decode: exact bytes');
  t.ok(tail.equals(body.subarray(size - 10)), 'the last bytes: exact');
  t.ok((await collect(await cache.range('x', size, decode, 0, size - 1))).equals(body), 'and from the file afterwards');
  // A reader whose client goes away mid-decode lets go of the entry.
  const gone = await cache.range('y', size, decode, 0, size - 1);
  await new Promise<void>((resolve) => gone.once('data', () => resolve()));
  gone.destroy();
  t.ok((await collect(await cache.range('y', size, decode, 0, size - 1))).equals(body), 'the decode went on for the next reader');
  cache.clear();
});

t.test('unit: a whole read of a version goes past the cache the first time; ranges never do', async (t) => {
  const cache = new DecodedCache(await tempDir(t), 3000);
  t.notOk(cache.wants('a', 1000, true), 'first whole read: straight');
  t.ok(cache.wants('a', 1000, true), 'second whole read: through the cache');
  t.ok(cache.wants('b', 1000, false), 'a range: through the cache, first time too');
  t.ok(cache.wants('c', 1000, true, true), 'always (the gzip form): through the cache');
  t.notOk(cache.wants('d', 4000, false), 'too large for the cache: never');
  t.notOk(cache.wants('d', 4000, true), 'too large, whole: never');
  t.notOk(cache.wants('d', 4000, true), '... however often');
  await collect(await cache.range('e', 1000, async () => Readable.from([randomBytes(1000)]), 0, 999));
  t.ok(cache.wants('e', 1000, true), 'cached (a range read it): a whole read joins it');
  cache.clear();
});

t.test('proxy: full and ranged GETs of a delta share one decode; damage never reaches a client', async (t) => {
  const proxy = await startProxy(t);
  const s3 = sdk(proxy.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'dcache' }));
  const v1 = release('zip', 1, 0.5);
  const v2 = release('zip', 2, 0.5);
  await s3.send(new PutObjectCommand({ Bucket: 'dcache', Key: 'r/v1.zip', Body: v1 }));
  await s3.send(new PutObjectCommand({ Bucket: 'dcache', Key: 'r/v2.zip', Body: v2 }));
  const names = (await blobs(proxy, 'dcache', 'r/')).map((b) => b.name);
  const delta = names.find((n) => /^r\/v2\.zip\.[0-9a-f]{16}\.delta\.bin$/.test(n));
  t.ok(delta, 'v2 is stored as a delta');
  const codec = proxy.app.engine.codec;
  const dir = path.join(proxy.app.engine.opts.cacheDir, 'decoded');
  const cached = async () => (await fsp.readdir(dir).catch(() => [])).length;
  // A one-off GET decodes straight to its client: no copy on disk.
  let runs = codec.stats.runs;
  t.equal(sha(await get(s3, 'r/v2.zip')), sha(v2), 'first GET: exact bytes');
  await until(() => codec.stats.runs - runs >= 1, 10_000, 'the first decode to be counted');
  t.equal(await cached(), 0, 'and no decoded copy kept');
  runs = codec.stats.runs;
  const mid = Math.floor(v2.length / 2);
  const got = await Promise.all([
    ...[0, 1, 2, 3, 4, 5].map(() => get(s3, 'r/v2.zip')),
    get(s3, 'r/v2.zip', `bytes=${mid}-${mid + 99_999}`),
    get(s3, 'r/v2.zip', 'bytes=0-9'),
  ]);
  t.ok(got.slice(0, 6).every((b) => sha(b) === sha(v2)), 'six full GETs: exact bytes');
  t.same(got[6], v2.subarray(mid, mid + 100_000), 'a range: exact bytes');
  t.same(got[7], v2.subarray(0, 10), 'a leading range: exact bytes');
  await until(() => codec.stats.runs - runs >= 1, 10_000, 'the decode to be counted');
  t.equal(codec.stats.runs - runs, 1, 'one xdelta3 decode served all eight');
  t.equal(await cached(), 1, 'and its copy is kept');

  // A damaged cache file fails the read that meets it (the SHA-256 check),
  // is dropped, and the next read decodes the stored delta again.
  const [file] = await fsp.readdir(dir);
  const p = path.join(dir, file);
  const buf = await fsp.readFile(p);
  buf[1234] ^= 0x01;
  await fsp.writeFile(p, buf);
  await t.rejects(get(s3, 'r/v2.zip'), 'a full GET over the damaged copy fails');
  t.equal(sha(await get(s3, 'r/v2.zip')), sha(v2), 'the next GET decodes again and is whole');
  // Counted when xdelta3 exits, which can be just after its client has the
  // last byte (the first reader takes the bytes as they come).
  await until(() => codec.stats.runs - runs >= 2, 10_000, 'the second decode to be counted');
  t.equal(codec.stats.runs - runs, 2, 'with one more decode');
  await until(async () => (await cached()) === 1, 10_000, 'the copy to be made again');

  // Damage in the stored delta: served reads stay correct from the verified
  // copy, and scrub, which reads past every cache, reports the object.
  const { body } = await proxy.app.engine.backend.getStream('dcache', delta!);
  const stored = await collect(body);
  stored[100] ^= 0x40;
  await proxy.app.engine.backend.putBytes('dcache', delta!, stored);
  t.equal(sha(await get(s3, 'r/v2.zip')), sha(v2), 'the cached copy is still verified and whole');
  const report = await scrub({ backend: proxy.app.engine.backend, store: proxy.app.engine }, { bucket: 'dcache', prefix: 'r/' });
  t.same(report.damaged.map((d) => d.key), ['r/v2.zip'], 'scrub finds the damaged delta');
});
