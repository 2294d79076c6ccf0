import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { build } from '../src/app.js';
import { scanUsage } from '../src/engine/usage.js';
import { sdk } from './helpers/clients.js';
import { motoAvailable, startMoto } from './helpers/moto.js';
import { BACKEND, settle, startProxy, tempDir, type Proxy } from './helpers/proxy.js';

// Per-bucket figures (src/engine/usage.ts) as Prometheus exports them, checked
// against the bytes in the data directory after puts, overwrites, deletes and
// a restart; and `deltaglider-proxy stats --json` against the same.

const loader = process.execArgv.filter((a) => a.includes('typescript'));
const main = path.resolve('src/main.ts');

async function scrape(url: string, token?: string): Promise<Map<string, number>> {
  const r = await fetch(`${url}/_/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  if (r.status !== 200) throw new Error(`metrics: HTTP ${r.status}`);
  const out = new Map<string, number>();
  for (const line of (await r.text()).split('\n')) {
    const m = /^(deltaglider_[a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

/** Bytes and objects the data dir holds for a bucket (the backend's own %% files aside). */
async function onDisk(dataDir: string, bucket: string): Promise<{ stored: number; objects: number }> {
  let stored = 0;
  let objects = 0;
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      if (e.name.startsWith('%%')) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        stored += (await fsp.stat(p)).size;
        if (/\.object\.meta$|\.(delta|direct)\.meta$/.test(e.name)) objects++;
      }
    }
  };
  await walk(path.join(dataDir, bucket));
  return { stored, objects };
}

function variant(base: Buffer, n: number): Buffer {
  const b = Buffer.from(base);
  randomBytes(64).copy(b, 1000 + n * 5000);
  return b;
}

t.test('bucket figures follow puts, overwrites, deletes and a restart', { skip: BACKEND === 's3' ? 'reads the filesystem data dir' : false }, async (t) => {
  const p = await startProxy(t, { metricsPublic: true });
  const s3 = sdk(p.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'figures' }));
  const base = randomBytes(300_000);
  const logical = new Map<string, number>();
  const check = async (what: string, proxy: Proxy = p) => {
    // Replaced blobs leave after a grace period; the figures never count them.
    await settle(proxy);
    await settle(proxy);
    const m = await scrape(proxy.url);
    const disk = await onDisk(proxy.dataDir, 'figures');
    const sum = [...logical.values()].reduce((a, b) => a + b, 0);
    t.equal(m.get('deltaglider_stored_bytes{bucket="figures"}'), disk.stored, `${what}: stored bytes = bytes in the data dir`);
    t.equal(m.get('deltaglider_logical_bytes{bucket="figures"}'), sum, `${what}: logical bytes`);
    t.equal(m.get('deltaglider_objects{bucket="figures"}'), logical.size, `${what}: objects`);
    t.equal(disk.objects, logical.size, `${what}: sidecars on disk`);
  };
  const put = async (key: string, body: Buffer) => {
    const r = await s3.send(new PutObjectCommand({ Bucket: 'figures', Key: key, Body: body }));
    logical.set(key, body.length);
    return r;
  };
  await check('empty');
  await put('rel/app-1.0.zip', variant(base, 0));
  await check('first delta-eligible object (seeds the reference)');
  await put('rel/app-1.1.zip', variant(base, 1));
  await put('rel/app-1.2.zip', variant(base, 2));
  await put('notes.txt', Buffer.from('hello'));
  await put('rel/random.zip', randomBytes(50_000)); // stored direct: no match
  await check('deltas and direct objects');
  await put('rel/app-1.1.zip', variant(base, 3));
  await put('notes.txt', Buffer.from('hello again, longer'));
  await put('rel/random.zip', variant(base, 4)); // direct -> delta
  await check('overwrites');
  await s3.send(new DeleteObjectCommand({ Bucket: 'figures', Key: 'rel/app-1.2.zip' }));
  logical.delete('rel/app-1.2.zip');
  await check('a delete');
  for (const k of ['rel/app-1.0.zip', 'rel/app-1.1.zip', 'rel/random.zip']) {
    await s3.send(new DeleteObjectCommand({ Bucket: 'figures', Key: k }));
    logical.delete(k);
  }
  await check('the deltaspace emptied (reference collected)');
  await put('rel/app-2.0.zip', variant(base, 5));
  await put('rel/app-2.1.zip', variant(base, 6));

  // A restart: the figures come from the record, with no scan.
  await p.app.close();
  const listed: string[] = [];
  const again = await build({ ...p.config });
  const origList = again.engine.backend.list.bind(again.engine.backend);
  again.engine.backend.list = (bucket, opts) => {
    listed.push(bucket);
    return origList(bucket, opts);
  };
  await again.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => again.close());
  const port = (again.server.address() as { port: number }).port;
  await check('after a restart', { ...p, app: again, url: `http://127.0.0.1:${port}` });
  t.same(listed.filter((b) => b === 'figures'), [], 'no scan of the bucket at start-up');

  // The scan that stats and the reconcile use agrees with the live figures.
  const scanned = await scanUsage(again.engine.backend, 'figures');
  t.equal(scanned.stored_bytes, (await onDisk(p.dataDir, 'figures')).stored, 'scanUsage: stored bytes');
  t.equal(scanned.objects, logical.size);
  const rel = scanned.deltaspaces.find((d) => d.deltaspace === 'rel')!;
  t.equal(rel.deltas, 2, 'rel/: two deltas');
  t.ok(rel.reference_bytes > 300_000, 'rel/: the reference is counted');

  // And the stats command, reading the data dir with no server involved.
  const r = await execa(process.execPath, [...loader, main, 'stats', 's3://figures', '--json', '--data-dir', p.dataDir], { reject: false, all: true, timeout: 60_000 });
  t.equal(r.exitCode, 0, r.exitCode === 0 ? 'stats --json runs' : r.all);
  const stats = JSON.parse(r.stdout) as { objects: number; logical_bytes: number; stored_bytes: number; saving: number; deltaspaces: unknown[] };
  t.equal(stats.stored_bytes, scanned.stored_bytes, 'stats --json: stored bytes');
  t.equal(stats.logical_bytes, scanned.logical_bytes, 'stats --json: logical bytes');
  t.equal(stats.objects, scanned.objects, 'stats --json: objects');
  t.same(stats.deltaspaces, scanned.deltaspaces, 'stats --json: per-deltaspace rows');
  const text = await execa(process.execPath, [...loader, main, 'stats', '--data-dir', p.dataDir], { reject: false, all: true, timeout: 60_000 });
  t.equal(text.exitCode, 0, text.exitCode === 0 ? 'stats runs' : text.all);
  t.match(text.stdout, /s3:\/\/figures\s+3\s/, 'text output: the bucket line');
  t.match(text.stdout, /\n {2}rel\/\s+2\s+2\s+0\s/, 'text output: the deltaspace line');
});

t.test('the object that seeded a reference reports the reference as its stored size', async (t) => {
  const p = await startProxy(t);
  const s3 = sdk(p.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'seeds' }));
  const base = randomBytes(100_000);
  const first = await fetchHeaders(p, s3, 'seeds', 'v/a-1.zip', base);
  t.ok(first > 100_000, `the seeding upload reports the reference (${first} bytes)`);
  const second = await fetchHeaders(p, s3, 'seeds', 'v/a-2.zip', variant(base, 1));
  t.ok(second < 5_000, `a later version reports its delta (${second} bytes)`);
});

async function fetchHeaders(_p: Proxy, s3: ReturnType<typeof sdk>, bucket: string, key: string, body: Buffer): Promise<number> {
  let size = -1;
  s3.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      const h = (out.response as { headers: Record<string, string> }).headers;
      if (h['x-deltaglider-stored-size']) size = Number(h['x-deltaglider-stored-size']);
      return out;
    },
    { step: 'deserialize', name: `peek-${key}` },
  );
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  return size;
}

t.test('several instances on one backend agree after a sync', async (t) => {
  const dataDir = await tempDir(t);
  const a = await startProxy(t, { dataDir, metricsPublic: true });
  const s3 = sdk(a.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'shared' }));
  await s3.send(new PutObjectCommand({ Bucket: 'shared', Key: 'x.txt', Body: 'twelve bytes' }));
  await a.app.engine.usage.sync();
  // A second tracker on the same backend (another instance) reads the record.
  const b = await startProxy(t, { dataDir, metricsPublic: true });
  const mb = await scrape(b.url);
  t.equal(mb.get('deltaglider_logical_bytes{bucket="shared"}'), 12);
  t.equal(mb.get('deltaglider_objects{bucket="shared"}'), 1);
  // Changes through b reach a at a's next sync.
  const s3b = sdk(b.url);
  t.teardown(() => s3b.destroy());
  await s3b.send(new PutObjectCommand({ Bucket: 'shared', Key: 'y.txt', Body: 'three' }));
  await b.app.engine.usage.sync();
  await a.app.engine.usage.sync();
  const ma = await scrape(a.url);
  t.equal(ma.get('deltaglider_logical_bytes{bucket="shared"}'), 17);
  t.equal(ma.get('deltaglider_objects{bucket="shared"}'), 2);
});

t.test('two instances on one S3 backend: concurrent writes add up', { skip: await motoAvailable() }, async (t) => {
  const moto = await startMoto(t);
  const backend = await moto.backend('usage-shared', 'dgp/');
  const a = await startProxy(t, { ...backend, metricsPublic: true });
  const b = await startProxy(t, { ...backend, metricsPublic: true });
  const ca = sdk(a.url);
  const cb = sdk(b.url);
  t.teardown(() => {
    ca.destroy();
    cb.destroy();
  });
  await ca.send(new CreateBucketCommand({ Bucket: 'both' }));
  const base = randomBytes(100_000);
  await Promise.all(
    Array.from({ length: 8 }, (_, i) => (i % 2 ? cb : ca).send(new PutObjectCommand({ Bucket: 'both', Key: `v/app-${i}.zip`, Body: variant(base, i % 15) }))),
  );
  await cb.send(new DeleteObjectCommand({ Bucket: 'both', Key: 'v/app-3.zip' }));
  await ca.send(new PutObjectCommand({ Bucket: 'both', Key: 'v/app-5.zip', Body: variant(base, 9) }));
  // Both write their changes at once: the conditional writes serialise them.
  await Promise.all([a.app.engine.usage.sync(), b.app.engine.usage.sync()]);
  await Promise.all([a.app.engine.usage.sync(), b.app.engine.usage.sync()]);
  const truth = await scanUsage(a.app.engine.backend, 'both');
  for (const [name, p] of [['a', a], ['b', b]] as const) {
    const m = await scrape(p.url);
    t.equal(m.get('deltaglider_objects{bucket="both"}'), 7, `${name}: objects`);
    t.equal(m.get('deltaglider_logical_bytes{bucket="both"}'), truth.logical_bytes, `${name}: logical bytes = a scan`);
    t.equal(m.get('deltaglider_stored_bytes{bucket="both"}'), truth.stored_bytes, `${name}: stored bytes = a scan`);
  }
});

t.test('a bucket without a record is counted in the background; a deleted bucket is forgotten', { skip: BACKEND === 's3' ? 'reads the filesystem data dir' : false }, async (t) => {
  const p = await startProxy(t, { metricsPublic: true });
  const s3 = sdk(p.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'older' }));
  const base = randomBytes(80_000);
  for (let i = 0; i < 3; i++) await s3.send(new PutObjectCommand({ Bucket: 'older', Key: `r/v${i}.zip`, Body: variant(base, i) }));
  await p.app.close();
  // As if written by a release without usage figures.
  await fsp.rm(path.join(p.dataDir, '.usage'), { recursive: true, force: true });
  const again = await build({ ...p.config });
  await again.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => again.close());
  const url = `http://127.0.0.1:${(again.server.address() as { port: number }).port}`;
  const disk = await onDisk(p.dataDir, 'older');
  let m = await scrape(url);
  for (let i = 0; i < 100 && m.get('deltaglider_objects{bucket="older"}') !== 3; i++) {
    await new Promise((r) => setTimeout(r, 100));
    m = await scrape(url);
  }
  t.equal(m.get('deltaglider_objects{bucket="older"}'), 3, 'counted by the background scan');
  t.equal(m.get('deltaglider_stored_bytes{bucket="older"}'), disk.stored);
  const rec = JSON.parse(await fsp.readFile(path.join(p.dataDir, '.usage', 'older.json'), 'utf8')) as { reconciled?: string; objects: number };
  t.equal(rec.objects, 3, 'and recorded');
  t.ok(rec.reconciled, 'with the time of the count');

  const s3b = sdk(url);
  t.teardown(() => s3b.destroy());
  for (let i = 0; i < 3; i++) await s3b.send(new DeleteObjectCommand({ Bucket: 'older', Key: `r/v${i}.zip` }));
  const { DeleteBucketCommand } = await import('@aws-sdk/client-s3');
  await s3b.send(new DeleteBucketCommand({ Bucket: 'older' }));
  t.notOk((await scrape(url)).has('deltaglider_objects{bucket="older"}'), 'a deleted bucket leaves the metrics');
  await s3b.send(new CreateBucketCommand({ Bucket: 'older' }));
  t.equal((await scrape(url)).get('deltaglider_objects{bucket="older"}'), 0, 'and comes back empty');
});
