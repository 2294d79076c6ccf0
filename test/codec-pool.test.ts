import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { BusyError } from '../src/errors.js';
import { CodecPool } from '../src/engine/codec-pool.js';
import { Codec } from '../src/engine/codec.js';
import { available, expectOk, run, sdk } from './helpers/clients.js';
import { startProxy, tempDir } from './helpers/proxy.js';
import { connectNonReading, signedHead, until } from './helpers/raw.js';

// The codec pool: a bounded number of xdelta3 processes within a memory
// budget, a bounded queue, 503 SlowDown beyond it, and slow readers that do
// not keep a process.

const MIB = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('pool: processes, queue, refusal, withdrawal', async (t) => {
  const pool = new CodecPool({ maxProcesses: 2, memoryBytes: 100, queueLength: 1 });
  const a = await pool.acquire(10);
  const b = await pool.acquire(10);
  t.equal(pool.stats.running, 2);
  let granted = false;
  const c = pool.acquire(10).then((s) => {
    granted = true;
    return s;
  });
  t.equal(pool.stats.queued, 1);
  t.throws(() => pool.acquire(10), BusyError, 'queue full: busy, at once');
  t.equal(pool.stats.refused, 1);
  t.equal(pool.tryAcquire(10), null, 'no slot free now');
  a.release();
  a.release();
  (await c).release();
  t.ok(granted, 'the queued job ran when a slot was released');
  const ac = new AbortController();
  const d1 = await pool.acquire(10);
  const waiting = pool.acquire(10, ac.signal);
  ac.abort(new Error('client gone'));
  await t.rejects(waiting, /client gone/);
  t.equal(pool.stats.queued, 0, 'a withdrawn request leaves the queue');
  d1.release();
  b.release();
  t.equal(pool.stats.running, 0);
  t.equal(pool.stats.runs, 4);
});

t.test('pool: memory budget; a job larger than the budget runs alone', async (t) => {
  const pool = new CodecPool({ maxProcesses: 8, memoryBytes: 100, queueLength: 10 });
  const a = await pool.acquire(60);
  let bGranted = false;
  const b = pool.acquire(60).then((s) => ((bGranted = true), s));
  await new Promise((r) => setImmediate(r));
  t.notOk(bGranted, '60 + 60 > 100: waits');
  a.release();
  const bs = await b;
  bs.release();
  const big = await pool.acquire(500);
  t.equal(pool.stats.memoryBytes, 500, 'alone, over the budget');
  let small = false;
  const s = pool.acquire(1).then((x) => ((small = true), x));
  await new Promise((r) => setImmediate(r));
  t.notOk(small, 'nothing runs beside it');
  big.release();
  (await s).release();
});

t.test('pool: upload-time encoders are preempted by queued work', async (t) => {
  const pool = new CodecPool({ maxProcesses: 1, memoryBytes: 100, queueLength: 10 });
  let preempted = false;
  const pre = pool.tryAcquire(10, () => {
    preempted = true;
    pre!.release();
  });
  t.ok(pre, 'a free slot is taken');
  const next = await pool.acquire(10);
  t.ok(preempted, 'the encoder was asked to stop');
  next.release();
});

/** A reference of `size` random bytes, a target with `edit` written into it, and its delta, in `dir`. */
async function encodedPair(codec: Codec, dir: string, size: number, edit: string) {
  const ref = randomBytes(size);
  const target = Buffer.from(ref);
  target.write(edit, 999);
  await fsp.writeFile(path.join(dir, 'ref'), ref);
  await fsp.writeFile(path.join(dir, 'target'), target);
  await codec.encode(path.join(dir, 'ref'), ref.length, path.join(dir, 'target'), path.join(dir, 'delta'));
  return { ref, target };
}

t.test('decode: a slow reader does not hold the process; the spool file goes with the stream', async (t) => {
  const dir = await tempDir(t);
  const spoolDir = path.join(dir, 'spool');
  await fsp.mkdir(spoolDir);
  const codec = new Codec({ binary: 'xdelta3', level: 1, secondary: 'default', maxWindow: 2048 * MIB, pool: { maxProcesses: 1 }, spoolDir });
  // Larger than what a stream may hold in memory ahead of its reader
  // (MEMORY_AHEAD, 16 MiB), so the rest goes to the spool.
  const { ref, target } = await encodedPair(codec, dir, 40 * MIB, 'different');

  const t0 = Date.now();
  const out = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'));
  const chunks: Buffer[] = [];
  const first = await new Promise<Buffer>((resolve) => out.once('data', resolve));
  const ttfb = Date.now() - t0;
  out.pause();
  chunks.push(first);
  t.ok(ttfb < 2000, `first byte after ${ttfb} ms`);
  await until(() => codec.stats.running === 0, 10_000, 'xdelta3 to exit while the reader waits');
  t.ok(codec.stats.spoolBytes > 8 * MIB, `${codec.stats.spoolBytes} bytes spooled ahead`);
  t.equal((await fsp.readdir(spoolDir)).length, 1, 'one spool file');
  // Another decode gets the one slot at once.
  const other = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'));
  const otherChunks: Buffer[] = [];
  for await (const c of other) otherChunks.push(c as Buffer);
  t.equal(sha(Buffer.concat(otherChunks)), sha(target));
  for await (const c of out) chunks.push(c as Buffer);
  t.equal(sha(Buffer.concat(chunks)), sha(target), 'the slow reader gets the exact bytes');
  await until(async () => (await fsp.readdir(spoolDir)).length === 0, 5000, 'spool files removed');
  t.equal(codec.stats.spoolBytes, 0);
  t.equal(codec.stats.runs, 3);

  // A reader that goes away mid-stream: process and file both go.
  const gone = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'));
  await new Promise((resolve) => gone.once('data', resolve));
  gone.pause();
  gone.destroy();
  await until(async () => codec.stats.running === 0 && (await fsp.readdir(spoolDir)).length === 0, 5000, 'clean-up after abort');
  t.equal(codec.stats.spoolBytes, 0);

  // Encoding at upload time only with a free slot.
  const busy = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'));
  busy.pause();
  await until(() => codec.stats.running === 1, 5000, 'a decode running');
  t.equal(codec.encodeStream(path.join(dir, 'ref'), ref.length, path.join(dir, 'pre')), null, 'no slot: no upload-time encoder');
  busy.destroy();
});

t.test('HTTP: a full queue answers 503 SlowDown with Retry-After', async (t) => {
  // One process, no queue, no spool, no decoded cache (which would decode at
  // xdelta3's speed whatever the reader): a reader that reads nothing keeps
  // the process, once the object is larger than what a decode may hold in
  // memory ahead of its reader (16 MiB) plus the socket's buffers.
  const p = await startProxy(t, { codecMaxProcesses: 1, codecQueueLength: 0, codecSpoolMb: 0, decodedCacheMb: 0, sendIdleTimeoutSecs: 30 });
  const s3 = sdk(p.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'pool' }));
  const ref = randomBytes(40 * MIB);
  const v2 = Buffer.from(ref);
  v2.write('v2', 77);
  await s3.send(new PutObjectCommand({ Bucket: 'pool', Key: 'r/a.zip', Body: ref }));
  await s3.send(new PutObjectCommand({ Bucket: 'pool', Key: 'r/b.zip', Body: v2 }));
  t.equal((await p.app.engine.headObject('pool', 'r/b.zip')).kind, 'delta');
  const hog = await connectNonReading(p.port);
  t.teardown(() => hog.socket.destroy());
  hog.socket.write(signedHead(p.port, 'GET', '/pool/r/b.zip'));
  await until(() => p.app.engine.codec.stats.running === 1, 5000, 'the hog to hold the process');
  const err = await s3.send(new GetObjectCommand({ Bucket: 'pool', Key: 'r/b.zip' })).then(
    () => null,
    (e: { name: string; $metadata: { httpStatusCode: number }; $response?: { headers: Record<string, string> } }) => e,
  );
  t.equal(err?.name, 'SlowDown');
  t.equal(err?.$metadata.httpStatusCode, 503);
  t.equal(err?.$response?.headers['retry-after'], '1');
  hog.socket.destroy();
  await until(() => p.app.engine.codec.stats.running === 0, 5000, 'the process to go with its client');
  const ok = await s3.send(new GetObjectCommand({ Bucket: 'pool', Key: 'r/b.zip' }));
  t.equal(sha(Buffer.from(await ok.Body!.transformToByteArray())), sha(v2), 'served again once the process is free');
});

const awsSkip = await available(['/usr/bin/aws', '--version'], 'aws-cli v2');
t.test('three aws s3 sync runs (10 parallel requests each) on one xdelta3 process never see SlowDown', { skip: awsSkip }, async (t) => {
  const p = await startProxy(t, { codecMaxProcesses: 1 });
  const work = await tempDir(t);
  const base = randomBytes(512 * 1024);
  for (let i = 0; i < 3; i++) {
    const dir = path.join(work, `up-${i}`);
    await fsp.mkdir(dir);
    for (let v = 0; v < 12; v++) {
      const b = Buffer.from(base);
      b.write(`sync ${i} version ${v}`, 1000 + v * 7000);
      await fsp.writeFile(path.join(dir, `build-${v}.zip`), b);
    }
  }
  const aws = (...args: string[]) => run('/usr/bin/aws', ['--endpoint-url', p.url, ...args]);
  expectOk(t, await aws('s3', 'mb', 's3://syncs'), 'mb');
  const ups = await Promise.all([0, 1, 2].map((i) => aws('s3', 'sync', path.join(work, `up-${i}`), `s3://syncs/app-${i}/`)));
  ups.forEach((r, i) => expectOk(t, r, `sync up ${i}`));
  const downs = await Promise.all([0, 1, 2].map((i) => aws('s3', 'sync', 's3://syncs/', path.join(work, `down-${i}`))));
  downs.forEach((r, i) => expectOk(t, r, `sync down ${i}`));
  for (let i = 0; i < 3; i++) {
    const a = await fsp.readFile(path.join(work, 'up-1', 'build-7.zip'));
    const b = await fsp.readFile(path.join(work, `down-${i}`, 'app-1', 'build-7.zip'));
    t.equal(sha(b), sha(a), `download ${i} is exact`);
  }
  const stats = p.app.engine.codec.stats;
  t.equal(stats.refused, 0, 'no request was refused');
  // An encode per upload (33 deltas, 3 seeds) and a decode per version: the
  // three downloads of a version share one (the decoded cache).
  t.ok(stats.runs >= 2 * 33, `${stats.runs} xdelta3 runs, one at a time`);
});

t.test('decode with no spool budget: a slow reader still gets every byte', async (t) => {
  const dir = await tempDir(t);
  const codec = new Codec({ binary: 'xdelta3', level: 1, secondary: 'default', maxWindow: 2048 * MIB, spoolDir: dir, spoolBytes: 0 });
  const { ref, target } = await encodedPair(codec, dir, 4 * MIB, 'zero budget');
  const chunks: Buffer[] = [];
  for await (const c of codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'))) {
    chunks.push(c as Buffer);
    await new Promise((r) => setTimeout(r, 5));
  }
  t.equal(sha(Buffer.concat(chunks)), sha(target));
  t.equal(codec.stats.spoolBytes, 0);
});

t.test('an upload-time encoder stopped between writes does not stall the upload', async (t) => {
  // The encoder's stdin closes without an 'error' when it is killed while no
  // write is pending; the spool must drop it rather than wait for a 'drain'
  // that never comes (this hung PUTs racing ranged GETs of delta objects).
  const dir = await tempDir(t);
  const ref = path.join(dir, 'ref');
  await fsp.writeFile(ref, randomBytes(MIB));
  const codec = new Codec({ binary: 'xdelta3', level: 1, secondary: 'default', maxWindow: 64 * MIB, pool: { maxProcesses: 1 } });
  const enc = codec.encodeStream(ref, MIB, path.join(dir, 'out'))!;
  t.ok(enc, 'an encoder started');
  const { spool } = await import('../src/engine/spool.js');
  const { Readable } = await import('node:stream');
  const chunk = randomBytes(256 * 1024);
  async function* body() {
    yield chunk.subarray(0, 1000); // small enough to leave nothing pending in the pipe
    await new Promise((r) => setTimeout(r, 100));
    enc.kill();
    await enc.done.catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 16; i++) yield chunk;
  }
  const done = spool(Readable.from(body()), dir, { tee: enc.stdin });
  const got = await Promise.race([done, new Promise<null>((r) => setTimeout(() => r(null), 10_000).unref())]);
  t.ok(got, 'the spool finished');
  t.equal(got?.size, 1000 + 16 * chunk.length, 'with every byte');
  t.equal(got?.teed, false, 'and knows the encoder did not get them all');
  await got?.dispose();
});

t.test('an upload-time encoder does not keep its output in memory', async (t) => {
  // execa 9 buffers a stdout redirected to a file as a string too, unless
  // told not to: for random data the delta is as large as the upload.
  const dir = await tempDir(t);
  const ref = path.join(dir, 'ref');
  await fsp.writeFile(ref, randomBytes(MIB));
  const codec = new Codec({ binary: 'xdelta3', level: 1, secondary: 'none', maxWindow: 64 * MIB, pool: { maxProcesses: 1 } });
  const out = path.join(dir, 'out');
  const enc = codec.encodeStream(ref, MIB, out)!;
  const before = process.memoryUsage().heapUsed;
  let peak = before;
  const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 10);
  for (let i = 0; i < 48; i++) if (!enc.stdin.write(randomBytes(MIB))) await new Promise((r) => enc.stdin.once('drain', r));
  enc.stdin.end();
  await enc.done;
  peak = Math.max(peak, process.memoryUsage().heapUsed);
  clearInterval(sample);
  t.ok((await fsp.stat(out)).size > 40 * MIB, 'the delta of random data is about its size');
  t.ok(peak - before < 24 * MIB, `heap grew ${((peak - before) / MIB).toFixed(1)} MiB while ~48 MiB of delta went to the file`);
});
