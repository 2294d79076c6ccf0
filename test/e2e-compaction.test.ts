import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { COMPACT } from '../src/engine/compaction.js';
import type { Config } from '../src/config/config.js';
import { sdk } from './helpers/clients.js';
import { BACKEND, blobs, startProxy, storedBytes, type Proxy } from './helpers/proxy.js';

// Background compaction (compaction = "background", src/engine/compaction.ts):
// PUTs are acknowledged as direct objects and become deltas afterwards, with
// the same ETag and Last-Modified; reads are exact throughout; the work
// survives a restart; an overwrite or delete meanwhile wins; a full backlog
// sends PUTs back to inline encoding; with two instances on one S3 backend
// each object is compacted once. On whichever backend the run uses.

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const versions = [1, 2, 3, 4].map((v) => release('zip', v, 0.4));
const BG: Partial<Config> = { compaction: 'background', blobGraceSeconds: 0 };

async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function markers(p: Proxy): Promise<string[]> {
  const out: string[] = [];
  for await (const b of p.app.engine.backend.list(COMPACT)) out.push(b.name);
  return out;
}

async function storedAs(s3: S3Client, bucket: string, key: string): Promise<{ etag: string; modified: number }> {
  const h = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  return { etag: h.ETag!, modified: h.LastModified!.getTime() };
}

/** x-deltaglider-stored-as of a key, read from its sidecar through the engine. */
async function kindOf(p: Proxy, bucket: string, key: string): Promise<string | undefined> {
  return (await p.app.engine.findObject(bucket, key))?.kind;
}

async function body(s3: S3Client, bucket: string, key: string): Promise<{ etag: string; bytes: Buffer }> {
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: AbortSignal.timeout(60_000) });
  return { etag: r.ETag!.replace(/"/g, ''), bytes: Buffer.from(await r.Body!.transformToByteArray()) };
}

/** Settings that reach the same stored data from a second proxy. */
function sameBackend(p: Proxy): Partial<Config> {
  if (BACKEND !== 's3') return { dataDir: p.dataDir };
  const c = p.config;
  return { s3Bucket: c.s3Bucket, s3Endpoint: c.s3Endpoint, s3Region: c.s3Region, s3ForcePathStyle: c.s3ForcePathStyle, s3Prefix: c.s3Prefix, s3AccessKeyId: c.s3AccessKeyId, s3SecretAccessKey: c.s3SecretAccessKey };
}

t.test('PUTs are direct first, deltas after; same ETag and Last-Modified; reads exact throughout', async (t) => {
  const proxy = await startProxy(t, BG);
  const s3 = sdk(proxy.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'compact' }));
  const byEtag = new Map(versions.map((v) => [md5(v), v]));
  let stop = false;
  let wrong = 0;
  let reads = 0;
  // Readers of every key while the keys are written and compacted.
  const readers = [0, 1, 2].map(async (n) => {
    while (!stop) {
      const key = `rel/app-${(reads + n) % versions.length}.zip`;
      try {
        const r = await body(s3, 'compact', key);
        if (!byEtag.get(r.etag)?.equals(r.bytes)) wrong++;
        reads++;
      } catch (err) {
        if ((err as { name?: string }).name !== 'NoSuchKey') wrong++;
      }
    }
  });
  const before = new Map<string, { etag: string; modified: number }>();
  for (const [i, v] of versions.entries()) {
    await s3.send(new PutObjectCommand({ Bucket: 'compact', Key: `rel/app-${i}.zip`, Body: v }));
    before.set(`rel/app-${i}.zip`, await storedAs(s3, 'compact', `rel/app-${i}.zip`));
  }
  await waitFor('compaction to finish', async () => proxy.app.engine.compactor.stats.backlog === 0 && (await markers(proxy)).length === 0);
  stop = true;
  await Promise.all(readers);
  t.ok(reads > 0, `readers read during compaction (${reads} GETs)`);
  t.equal(wrong, 0, 'every read was exact, none failed');
  for (const [i, v] of versions.entries()) {
    const key = `rel/app-${i}.zip`;
    t.equal(await kindOf(proxy, 'compact', key), 'delta', `${key} is a delta now`);
    const now = await storedAs(s3, 'compact', key);
    t.same(now, before.get(key), `${key}: same ETag and Last-Modified`);
    t.ok((await body(s3, 'compact', key)).bytes.equals(v), `${key}: exact bytes`);
  }
  t.equal(proxy.app.engine.compactor.stats.compacted, versions.length, 'each object compacted once');
  t.notOk((await blobs(proxy, 'compact')).some((b) => b.name.endsWith('.direct.bin')), 'no direct blob left once retired');

  // The same files written inline: background compaction stores no more.
  const inline = await startProxy(t, { compaction: 'inline', blobGraceSeconds: 0 });
  const s3i = sdk(inline.url, { maxAttempts: 1 });
  t.teardown(() => s3i.destroy());
  await s3i.send(new CreateBucketCommand({ Bucket: 'compact' }));
  for (const [i, v] of versions.entries()) await s3i.send(new PutObjectCommand({ Bucket: 'compact', Key: `rel/app-${i}.zip`, Body: v }));
  const [bg, il] = [await storedBytes(proxy, 'compact'), await storedBytes(inline, 'compact')];
  t.ok(bg <= il, `stored bytes after settling: background ${bg} <= inline ${il}`);
});

t.test('the work survives a restart; a dead instance\'s lease expires', async (t) => {
  const a = await startProxy(t, BG);
  const s3a = sdk(a.url, { maxAttempts: 1 });
  t.teardown(() => s3a.destroy());
  await s3a.send(new CreateBucketCommand({ Bucket: 'restart' }));
  // This instance records work but never does it, as if it died first.
  a.app.engine.compactor.opts.hold = true;
  for (const [i, v] of versions.entries()) await s3a.send(new PutObjectCommand({ Bucket: 'restart', Key: `r/v${i}.zip`, Body: v }));
  t.equal((await markers(a)).length, versions.length, 'one marker per waiting object');
  for (const [i] of versions.entries()) t.equal(await kindOf(a, 'restart', `r/v${i}.zip`), 'direct', `r/v${i}.zip acknowledged direct`);
  // One marker holds a lease of an instance that is gone.
  const name = (await markers(a))[0];
  const m = JSON.parse((await a.app.engine.backend.readSmall(COMPACT, name))!.body.toString());
  await a.app.engine.backend.putBytes(COMPACT, name, Buffer.from(JSON.stringify({ ...m, lease: { owner: 'gone', until: Date.now() + 3000 } })));
  await a.app.close();

  const b = await startProxy(t, { ...BG, ...sameBackend(a) });
  const s3b = sdk(b.url, { maxAttempts: 1 });
  t.teardown(() => s3b.destroy());
  // Found from the backend at start-up (one scan a second after it).
  if (b.app.engine.backend.shared) {
    // Another instance may still be working on the leased one: left alone until the lease expires.
    // The count goes up just after a work record is removed: wait for both.
    await waitFor('the unleased objects', async () => (await markers(b)).length === 1 && b.app.engine.compactor.stats.compacted >= versions.length - 1);
    t.equal(b.app.engine.compactor.stats.compacted, versions.length - 1, 'the others were compacted, the leased one left alone');
    await new Promise((r) => setTimeout(r, 3000));
    await b.app.engine.compactor.scan();
  }
  // On the filesystem only one instance uses the data dir: a foreign lease is a dead one, taken at once.
  await waitFor('every object', async () => (await markers(b)).length === 0 && b.app.engine.compactor.stats.compacted >= versions.length);
  t.equal(b.app.engine.compactor.stats.compacted, versions.length, 'all compacted by the new instance');
  for (const [i, v] of versions.entries()) {
    t.equal(await kindOf(b, 'restart', `r/v${i}.zip`), 'delta', `r/v${i}.zip compacted`);
    t.ok((await body(s3b, 'restart', `r/v${i}.zip`)).bytes.equals(v), `r/v${i}.zip exact`);
  }
});

t.test('an overwrite or a delete before compaction wins; a full backlog encodes inline', async (t) => {
  const proxy = await startProxy(t, BG);
  const s3 = sdk(proxy.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'overwrite' }));
  const c = proxy.app.engine.compactor;
  c.opts.hold = true;
  await s3.send(new PutObjectCommand({ Bucket: 'overwrite', Key: 'o/seed.zip', Body: versions[0] }));
  await s3.send(new PutObjectCommand({ Bucket: 'overwrite', Key: 'o/k.zip', Body: versions[1] }));
  await s3.send(new PutObjectCommand({ Bucket: 'overwrite', Key: 'o/k.zip', Body: versions[2] }));
  await s3.send(new PutObjectCommand({ Bucket: 'overwrite', Key: 'o/gone.zip', Body: versions[3] }));
  await s3.send(new DeleteObjectCommand({ Bucket: 'overwrite', Key: 'o/gone.zip' }));
  c.opts.hold = false;
  await c.scan();
  await waitFor('compaction', async () => c.stats.backlog === 0 && (await markers(proxy)).length === 0);
  t.equal(await kindOf(proxy, 'overwrite', 'o/k.zip'), 'delta', 'the newest version was compacted');
  t.ok((await body(s3, 'overwrite', 'o/k.zip')).bytes.equals(versions[2]), 'and reads as the newest version');
  t.equal(await kindOf(proxy, 'overwrite', 'o/gone.zip'), undefined, 'the deleted key stays deleted');
  const names = (await blobs(proxy, 'overwrite', 'o/')).map((b) => b.name);
  t.notOk(names.some((n) => n.startsWith('o/gone.zip')), `nothing of the deleted key is left (${names.join(', ')})`);
  t.equal(names.filter((n) => n.startsWith('o/k.zip.') && n.endsWith('.bin')).length, 1, 'one blob for the overwritten key');

  // Hostile or damaged work records: unreadable, or naming a key or bucket
  // that does not exist. Each is removed; nothing is written for it.
  const backend = proxy.app.engine.backend;
  await backend.putBytes(COMPACT, 'overwrite/o/junk.zip.json', Buffer.from('{not json'));
  await backend.putBytes(COMPACT, 'overwrite/o/none.zip.json', Buffer.from(JSON.stringify({ bucket: 'overwrite', key: 'o/none.zip', id: '0123456789abcdef', created: '' })));
  await backend.putBytes(COMPACT, 'no-such-bucket/k.zip.json', Buffer.from(JSON.stringify({ bucket: 'no-such-bucket', key: 'k.zip', id: '0123456789abcdef', created: '' })));
  const before = (await blobs(proxy, 'overwrite')).length;
  await c.scan();
  await waitFor('the bad records to go', async () => c.stats.backlog === 0 && (await markers(proxy)).length === 0);
  t.equal((await blobs(proxy, 'overwrite')).length, before, 'bad records removed, nothing written for them');
  t.equal(c.stats.failed, 0, 'and none counted as a failed compaction');

  // Backpressure: with no room in the backlog, a PUT encodes inline.
  c.opts.backlog = 0;
  await s3.send(new PutObjectCommand({ Bucket: 'overwrite', Key: 'o/inline.zip', Body: versions[3] }));
  t.equal(await kindOf(proxy, 'overwrite', 'o/inline.zip'), 'delta', 'stored as a delta at once');
  t.equal((await markers(proxy)).length, 0, 'and no work recorded');
});

// Only on the S3 backend (npm run test:s3): one instance per data dir on the filesystem.
if (BACKEND === 's3') t.test('two instances on one S3 backend compact each object once', async (t) => {
  const a = await startProxy(t, BG);
  const b = await startProxy(t, { ...BG, ...sameBackend(a) });
  const s3 = sdk(a.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'shared' }));
  a.app.engine.compactor.opts.hold = true;
  const n = 6;
  for (let i = 0; i < n; i++) await s3.send(new PutObjectCommand({ Bucket: 'shared', Key: `s/v${i}.zip`, Body: versions[i % versions.length] }));
  a.app.engine.compactor.opts.hold = false;
  await Promise.all([a.app.engine.compactor.scan(), b.app.engine.compactor.scan()]);
  await waitFor('compaction', async () => a.app.engine.compactor.stats.backlog + b.app.engine.compactor.stats.backlog === 0 && (await markers(a)).length === 0);
  const sa = a.app.engine.compactor.stats;
  const sb = b.app.engine.compactor.stats;
  t.equal(sa.compacted + sb.compacted, n, `each object compacted once (${sa.compacted} by one, ${sb.compacted} by the other)`);
  t.equal(sa.failed + sb.failed, 0, 'no failure');
  for (let i = 0; i < n; i++) t.equal(await kindOf(a, 'shared', `s/v${i}.zip`), 'delta', `s/v${i}.zip is a delta`);
});
