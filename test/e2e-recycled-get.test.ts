import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import aws4 from 'aws4';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import t from 'tap';
import { creds, sdk } from './helpers/clients.js';
import { startProxy } from './helpers/proxy.js';

// A version's first whole GET decodes straight to its client, into recycled
// buffers that the response hands back once written (src/engine/chunk-pool.ts,
// src/http/ops/get-object.ts); later whole GETs read its decoded copy into
// recycled buffers too. A buffer reused while the response still held
// its bytes would send other bytes than those hashed: the proxy's own check
// would pass and the client would get corrupt data. So the bytes are checked
// here, by the client, at full speed and by a client that keeps stopping
// (its response's writes queue up, the decode runs ahead into memory and the
// spool file).

const MIB = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** GET with a SigV4-signed request; `stall` ms pause after each chunk received. */
function get(port: number, p: string, stall = 0): Promise<{ status: number; sha: string; bytes: number }> {
  const s = aws4.sign({ host: `127.0.0.1:${port}`, method: 'GET', path: p, headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, service: 's3', region: 'us-east-1' }, creds);
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, headers: s.headers as Record<string, string> }, (res) => {
        const h = createHash('sha256');
        let bytes = 0;
        let n = 0;
        res.on('data', (c: Buffer) => {
          h.update(c);
          bytes += c.length;
          // Every 16th chunk (~1 MiB): a stop long enough for the response to fill up.
          if (stall && ++n % 16 === 0) {
            res.pause();
            setTimeout(() => res.resume(), stall);
          }
        });
        res.on('end', () => resolve({ status: res.statusCode!, sha: h.digest('hex'), bytes }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

t.test('first whole GETs of delta versions are exact, for a fast and a stalling client', async (t) => {
  const p = await startProxy(t);
  const s3 = sdk(p.url);
  await s3.send(new CreateBucketCommand({ Bucket: 'rec' }));
  const base = randomBytes(24 * MIB);
  const versions: Buffer[] = [];
  for (let i = 0; i < 4; i++) {
    const v = Buffer.from(base);
    for (let at = 4096 + i * 7919; at < v.length; at += 2 * MIB) randomBytes(8192).copy(v, at);
    versions.push(v);
    await s3.send(new PutObjectCommand({ Bucket: 'rec', Key: `rel/app-${i}.bin`, Body: v }));
  }
  for (const [i, stall] of [
    [1, 0],
    [2, 25],
    [3, 0],
  ] as const) {
    const got = await get(p.port, `/rec/rel/app-${i}.bin`, stall);
    t.equal(got.status, 200);
    t.equal(got.bytes, versions[i].length, `app-${i}: every byte (${stall ? 'stalling' : 'fast'} client)`);
    t.equal(got.sha, sha(versions[i]), `app-${i}: the bytes stored`);
  }
  // app-0's first whole GET beside second GETs of app-2 and app-3 (each
  // fills the decoded cache, which recycles its decode's chunks once they
  // are in the file; its live readers get copies).
  const all = await Promise.all([get(p.port, '/rec/rel/app-0.bin', 10), get(p.port, '/rec/rel/app-2.bin'), get(p.port, '/rec/rel/app-3.bin', 5)]);
  t.same(
    all.map((g) => g.sha),
    [versions[0], versions[2], versions[3]].map(sha),
    'parallel GETs exact',
  );
  t.match(p.app.engine.codec.stats, { linked: 6, linkFailed: 0 }, 'every decode read into recycled buffers: four first whole GETs, two decoded-cache fills');
  // Now from the decoded copies, read into recycled buffers too (src/engine/decoded-cache.ts).
  for (const [i, stall] of [
    [1, 25],
    [2, 0],
    [3, 25],
    [2, 10],
  ] as const) {
    const got = await get(p.port, `/rec/rel/app-${i}.bin`, stall);
    t.equal(got.sha, sha(versions[i]), `app-${i} again, from its decoded copy (${stall ? 'stalling' : 'fast'} client)`);
  }
});

t.test('a small delta object kept in memory by its first GET keeps its exact bytes', async (t) => {
  // The first whole GET of a small object also keeps its bytes in memory
  // for later GETs (src/engine/small-cache.ts): that copy must not be made
  // of buffers the response hands back for reuse.
  const p = await startProxy(t);
  const s3 = sdk(p.url);
  await s3.send(new CreateBucketCommand({ Bucket: 'small' }));
  const base = randomBytes(250 * 1024);
  await s3.send(new PutObjectCommand({ Bucket: 'small', Key: 'rel/base.bin', Body: base }));
  for (let i = 0; i < 6; i++) {
    const v = Buffer.from(base);
    randomBytes(512).copy(v, 1000 + i * 20_000);
    await s3.send(new PutObjectCommand({ Bucket: 'small', Key: `rel/v${i}.bin`, Body: v }));
    const first = await get(p.port, `/small/rel/v${i}.bin`, 5);
    const again = await get(p.port, `/small/rel/v${i}.bin`);
    t.same([first.sha, again.sha], [sha(v), sha(v)], `v${i}: first GET and the one from memory`);
  }
  t.equal(p.app.engine.codec.stats.linked, 0, 'reads kept in memory do not run on recycled buffers');
});
