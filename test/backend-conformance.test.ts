import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { AlreadyExistsError, NotFoundError, PreconditionError } from '../src/errors.js';
import { silentLogger } from '../src/log.js';
import type { Backend } from '../src/storage/backend.js';
import { compareKeys } from '../src/engine/listing.js';
import { FilesystemBackend } from '../src/storage/filesystem/fs-backend.js';
import { S3Backend } from '../src/storage/s3/s3-backend.js';
import { BLOBS_APART } from '../src/app.js';
import { mapLimit } from '../src/log.js';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { motoAvailable, startMoto } from './helpers/moto.js';
import { tempDir } from './helpers/proxy.js';

// One conformance suite for the Backend contract, run against every backend:
// the filesystem, and a real independent S3 server (moto_server).

const NAMES = ['plain.delta', 'cr\rx.direct', 'p+q r%2B.direct', 'dir/sub/file.direct.meta', 'a b/c+d=e&f.direct', 'ü/日本/😀.delta', '../../x.direct', 'a//b/.direct', `long/${'L'.repeat(300)}.direct`, 'dir/reference.bin'];
/** Names of immutable blobs, which the S3 backend keeps apart (BLOBS_APART): every listing still has them. */
const BLOB_NAMES = ['dir/sub/file.0123456789abcdef.direct.bin', 'dir/reference.fedcba9876543210.bin', 'a.0000000000000001.delta.bin', 'plain.0000000000000002.blocks.bin'];

async function readAll(s: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function conformance(name: string, make: (t: Test) => Promise<Backend>, skip: string | false = false) {
  t.test(name, { skip }, async (t) => {
    const b = await make(t);
    await b.init();
    t.teardown(() => b.close());
    const dir = await tempDir(t);

    await t.test('buckets', async (t) => {
      t.equal(await b.headBucket('conf-bucket'), null);
      await b.createBucket('conf-bucket');
      await t.rejects(b.createBucket('conf-bucket'), AlreadyExistsError);
      const info = await b.headBucket('conf-bucket');
      t.equal(info?.name, 'conf-bucket');
      t.ok(info!.created.getTime() > Date.now() - 3600_000);
      await b.createBucket('other-bucket');
      t.same((await b.listBuckets()).map((x) => x.name), ['conf-bucket', 'other-bucket']);
    });

    await t.test('small blobs and etags', async (t) => {
      t.equal(await b.readSmall('conf-bucket', 'nothing.meta'), null);
      const e1 = await b.putBytes('conf-bucket', 'k.meta', Buffer.from('{"v":1}'));
      const r = await b.readSmall('conf-bucket', 'k.meta');
      t.equal(r?.body.toString(), '{"v":1}');
      t.equal(r?.etag, e1);
      t.equal((await b.head('conf-bucket', 'k.meta'))?.etag, e1);
      await t.rejects(b.putBytes('conf-bucket', 'k.meta', Buffer.from('x'), { ifNoneMatch: true }), AlreadyExistsError);
      await t.rejects(b.putBytes('conf-bucket', 'k.meta', Buffer.from('{"v":2}'), { ifMatch: '"wrong"' }), PreconditionError);
      const e2 = await b.putBytes('conf-bucket', 'k.meta', Buffer.from('{"v":2}'), { ifMatch: e1 });
      t.not(e2, e1);
      await t.rejects(b.putBytes('conf-bucket', 'absent.meta', Buffer.from('x'), { ifMatch: e2 }), PreconditionError);
      await t.rejects(b.delete('conf-bucket', 'k.meta', { ifMatch: e1 }), PreconditionError);
      await b.delete('conf-bucket', 'k.meta', { ifMatch: e2 });
      t.equal(await b.head('conf-bucket', 'k.meta'), null);
      await b.delete('conf-bucket', 'k.meta');
      await b.delete('conf-bucket', 'k.meta', { ifMatch: e2 });
    });

    await t.test('conditional writes under a race: one writer wins, the others are told', async (t) => {
      // Each round: writers that all read the same version race to replace it
      // (If-Match), alongside one unconditional write. Exactly one conditional
      // write may succeed, and only if the unconditional one did not land
      // between its check and its commit; what is left is a write that
      // succeeded, never one that was refused.
      for (let round = 0; round < 20; round++) {
        const name = `race/k${round}.meta`;
        const base = await b.putBytes('conf-bucket', name, Buffer.from('base'));
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            b.putBytes('conf-bucket', name, Buffer.from(`w${i}`), { ifMatch: base }).then(
              () => `w${i}`,
              (err: unknown) => {
                if (!(err instanceof PreconditionError)) throw err;
                return null;
              },
            ),
          ),
        );
        const won = results.filter((r) => r !== null);
        const final = (await b.readSmall('conf-bucket', name))?.body.toString();
        if (won.length !== 1 || final !== won[0]) t.fail(`round ${round}: ${won.length} conditional writes succeeded (${won.join(', ')}), ${final} left`);
        // A conditional delete racing a conditional write on the same version:
        // whichever commits first changes the version, so the other's
        // If-Match must fail. Both succeeding means one acted on a version
        // that was already gone (the object is then missing, or written
        // after its delete).
        const e2 = (await b.head('conf-bucket', name))!.etag!;
        const [w, d] = await Promise.allSettled([b.putBytes('conf-bucket', name, Buffer.from('late'), { ifMatch: e2 }), b.delete('conf-bucket', name, { ifMatch: e2 })]);
        const left = (await b.readSmall('conf-bucket', name))?.body.toString();
        if (w.status === 'fulfilled' && d.status === 'fulfilled') t.fail(`round ${round}: the write and the delete both acted on one version (${left ?? 'nothing'} left)`);
        if (w.status === 'fulfilled' && left !== 'late') t.fail(`round ${round}: the write succeeded but ${left ?? 'nothing'} is left`);
        if (d.status === 'fulfilled' && w.status === 'rejected' && left !== undefined) t.fail(`round ${round}: the delete succeeded but ${left} is left`);
      }
      t.pass('every race had one winner');
    });

    await t.test('files, streams and ranges', async (t) => {
      for (const size of [0, 1000, 7 * 1024 * 1024 + 3]) {
        const data = randomBytes(size);
        const f = path.join(dir, `f${size}`);
        await fsp.writeFile(f, data);
        const etag = await b.putFile('conf-bucket', `files/f${size}.direct`, f);
        t.ok(etag, 'an etag');
        const full = await b.getStream('conf-bucket', `files/f${size}.direct`);
        t.equal(full.size, size);
        t.equal(createHash('sha256').update(await readAll(full.body)).digest('hex'), createHash('sha256').update(data).digest('hex'), `${size} bytes round-trip`);
        if (size > 100) {
          const part = await b.getStream('conf-bucket', `files/f${size}.direct`, { range: { start: 10, end: 99 } });
          t.equal(part.size, size, 'size is the whole blob');
          t.same(await readAll(part.body), data.subarray(10, 100));
        }
      }
      await t.rejects(b.getStream('conf-bucket', 'files/none.direct'), NotFoundError);
      const f = path.join(dir, 'ref');
      await fsp.writeFile(f, 'reference bytes');
      await b.putFile('conf-bucket', 'files/reference.bin', f, { ifNoneMatch: true });
      await t.rejects(b.putFile('conf-bucket', 'files/reference.bin', f, { ifNoneMatch: true }), AlreadyExistsError);
    });

    await t.test('names and listing', async (t) => {
      for (const n of [...NAMES, ...BLOB_NAMES]) await b.putBytes('other-bucket', n, Buffer.from(n));
      const all = (await collect(b.list('other-bucket'))).map((x) => x.name).sort();
      t.same(all, [...NAMES, ...BLOB_NAMES].sort(), 'every name listed back exactly');
      for (const n of [...NAMES, ...BLOB_NAMES]) t.equal((await b.readSmall('other-bucket', n))?.body.toString(), n);
      for (const n of BLOB_NAMES) t.equal((await b.head('other-bucket', n))?.size, Buffer.byteLength(n));
      t.same(
        (await collect(b.list('other-bucket', { prefix: 'dir/' }))).map((x) => x.name).sort(),
        ['dir/reference.bin', 'dir/reference.fedcba9876543210.bin', 'dir/sub/file.0123456789abcdef.direct.bin', 'dir/sub/file.direct.meta'],
      );
      t.same((await collect(b.list('other-bucket', { prefix: 'dir/', shallow: true }))).map((x) => x.name).sort(), ['dir/reference.bin', 'dir/reference.fedcba9876543210.bin']);
      t.same((await collect(b.list('other-bucket', { prefix: 'a' }))).map((x) => x.name).sort(), ['a b/c+d=e&f.direct', 'a.0000000000000001.delta.bin', 'a//b/.direct']);
      const long = (await collect(b.list('other-bucket', { prefix: 'long/', shallow: true }))).map((x) => x.name);
      t.same(long, [`long/${'L'.repeat(300)}.direct`]);
      t.same(await collect(b.list('other-bucket', { prefix: 'zzz' })), []);
      const sized = (await collect(b.list('other-bucket', { prefix: 'plain' }))).find((x) => x.name === 'plain.delta');
      t.equal(sized?.size, 'plain.delta'.length);
    });

    await t.test('sorted listing', { skip: !b.listSorted && 'no listSorted' }, async (t) => {
      const piece = 'P'.repeat(250);
      const names = [...NAMES, ...BLOB_NAMES, `${piece}/x.meta`, `${piece}!y.meta`, `${piece}0z.meta`, `${piece}.meta`, 'é.meta', '\u{e000}.meta', '😀.meta', 'a.delta/in.meta', 'a.delta', 'a-b.meta'];
      for (const n of names) await b.putBytes('other-bucket', n, Buffer.from('x'));
      const want = [...new Set(names)].sort(compareKeys);
      const got = async (prefix: string, startAfter?: string) => (await collect(b.listSorted!('other-bucket', { prefix, startAfter }))).map((x) => x.name);
      t.same(await got(''), want, 'UTF-8 byte order');
      for (const after of ['', ...want, 'a', 'dir/', 'P', `${piece}/`, `${piece}.`]) {
        t.same(await got('', after), want.filter((n) => compareKeys(n, after) > 0), `after ${after.slice(0, 20)}`);
      }
      for (const prefix of ['a', 'dir/', 'dir/s', piece, `${piece}/`, 'zzz']) t.same(await got(prefix), want.filter((n) => n.startsWith(prefix)), `prefix ${prefix.slice(0, 20)}`);
      const etags = await collect(b.listSorted!('other-bucket', { prefix: 'plain' }));
      t.equal(etags.find((x) => x.name === 'plain.delta')?.etag, (await b.head('other-bucket', 'plain.delta'))?.etag, 'etags as head gives them');
      // A hint, not a filter: whatever else comes, every name with the suffix does, in order.
      const metas = (await collect(b.listSorted!('other-bucket', { prefix: '', suffixes: ['.meta'] }))).map((x) => x.name).filter((n) => n.endsWith('.meta'));
      t.same(metas, want.filter((n) => n.endsWith('.meta')), 'suffixes: the names with them, in order');
    });

    await t.test('generation: moves before a change shows and again after it', { skip: !b.generation && 'no generation' }, async (t) => {
      const gen = () => b.generation!();
      const etag = () => b.quickEtag?.('conf-bucket', 'gen.meta') ?? null;
      // Polled while each change runs: whenever the change already shows
      // (a new etag, or none), the generation has moved.
      const watch = async (change: Promise<unknown>, label: string) => {
        const g0 = gen();
        const e0 = etag();
        let done = false;
        void change.then(
          () => (done = true),
          () => (done = true),
        );
        while (!done) {
          if (etag() !== e0) t.not(gen(), g0, `${label}: seen on disk only with a new generation`);
          await new Promise((r) => setImmediate(r));
        }
        await change;
        t.not(gen(), g0, `${label}: a new generation once done`);
      };
      await watch(b.putBytes('conf-bucket', 'gen.meta', Buffer.from('1')), 'create');
      await watch(b.putBytes('conf-bucket', 'gen.meta', Buffer.from('22')), 'overwrite');
      await watch(b.delete('conf-bucket', 'gen.meta'), 'delete');
      const before = gen();
      await b.createBucket('gen-bucket');
      await b.deleteBucket('gen-bucket');
      t.not(gen(), before, 'a bucket removed');
    });

    await t.test('deleting buckets', async (t) => {
      await b.deleteBucket('other-bucket');
      t.equal(await b.headBucket('other-bucket'), null);
      t.same(await collect(b.list('other-bucket')), []);
      t.same((await b.listBuckets()).map((x) => x.name), ['conf-bucket']);
    });
  });
}

conformance('filesystem backend', async (t) => new FilesystemBackend(path.join(await tempDir(t), 'data')));

const skip = await motoAvailable();
conformance(
  'S3 backend (moto_server)',
  async (t) => {
    const moto = await startMoto(t);
    const cfg = await moto.backend('conformance', 'pre/fix/');
    return new S3Backend(
      { bucket: cfg.s3Bucket!, prefix: cfg.s3Prefix!, endpoint: cfg.s3Endpoint, region: 'us-east-1', forcePathStyle: true, accessKeyId: cfg.s3AccessKeyId, secretAccessKey: cfg.s3SecretAccessKey, multipartThreshold: 6 * 1024 * 1024, apart: BLOBS_APART },
      silentLogger,
    );
  },
  skip,
);

t.test('S3 backend: blobs apart from sidecars, which list alone; blobs written before the split still found', { skip }, async (t) => {
  const moto = await startMoto(t);
  const cfg = await moto.backend('apart', 'pre/');
  const b = new S3Backend({ bucket: cfg.s3Bucket!, prefix: 'pre/', endpoint: cfg.s3Endpoint, region: 'us-east-1', forcePathStyle: true, accessKeyId: cfg.s3AccessKeyId, secretAccessKey: cfg.s3SecretAccessKey, apart: BLOBS_APART }, silentLogger);
  await b.init();
  t.teardown(() => b.close());
  await b.createBucket('bk');
  const raw = async (prefix: string) => ((await moto.client.send(new ListObjectsV2Command({ Bucket: cfg.s3Bucket!, Prefix: prefix }))).Contents ?? []).map((o) => o.Key);
  await b.putBytes('bk', 'k/a.0123456789abcdef.direct.bin', Buffer.from('new'));
  await b.putBytes('bk', 'k/a.object.meta', Buffer.from('{}'));
  t.same(await raw('pre/bk/'), ['pre/bk/k/a.object.meta'], 'the bucket area holds the sidecar');
  t.same(await raw('pre/.deltaglider/blobs/bk/'), ['pre/.deltaglider/blobs/bk/k/a.0123456789abcdef.direct.bin'], 'the blob is apart');
  t.same((await collect(b.listSorted('bk', { prefix: 'k/', suffixes: ['.meta'] }))).map((x) => x.name), ['k/a.object.meta'], 'a sidecar listing meets no blob');
  t.same((await collect(b.listSorted('bk', { prefix: 'k/' }))).map((x) => x.name), ['k/a.0123456789abcdef.direct.bin', 'k/a.object.meta'], 'a full one meets both, in order');

  // Written by a build before the split: among the sidecars.
  await moto.client.send(new PutObjectCommand({ Bucket: cfg.s3Bucket!, Key: 'pre/bk/k/b.1111111111111111.direct.bin', Body: 'old' }));
  t.equal((await b.readSmall('bk', 'k/b.1111111111111111.direct.bin'))?.body.toString(), 'old');
  t.equal((await readAll((await b.getStream('bk', 'k/b.1111111111111111.direct.bin')).body)).toString(), 'old');
  t.equal((await b.head('bk', 'k/b.1111111111111111.direct.bin'))?.size, 3);
  t.ok((await collect(b.list('bk'))).some((x) => x.name === 'k/b.1111111111111111.direct.bin'), 'listed, so the sweep finds it');
  await b.delete('bk', 'k/b.1111111111111111.direct.bin');
  t.equal(await b.head('bk', 'k/b.1111111111111111.direct.bin'), null, 'and deleted where it is');
  await t.rejects(b.getStream('bk', 'k/none.2222222222222222.direct.bin'), NotFoundError);

  // A page-sized consumer ends at a list call's end.
  await mapLimit(Array.from({ length: 1200 }, (_, i) => `many/k${String(i).padStart(5, '0')}.object.meta`), 16, (n) => b.putBytes('bk', n, Buffer.from('{}')));
  const ends: boolean[] = [];
  const cut = await collect(b.listSorted('bk', { prefix: 'many/', suffixes: ['.meta'], callEnd: (more) => (ends.push(more), true) }));
  t.equal(cut.length, 1000, 'one call: 1000 names');
  t.same(ends, [true], 'told that more remain');
  t.equal((await collect(b.listSorted('bk', { prefix: 'many/', suffixes: ['.meta'], callEnd: () => false }))).length, 1200, 'or goes on');
  await b.deleteBucket('bk');
  t.same(await raw('pre/.deltaglider/blobs/bk/'), [], 'a deleted bucket leaves nothing apart');
});

t.test('S3 backend: start-up says clearly when the bucket is missing', { skip }, async (t) => {
  const moto = await startMoto(t);
  const b = new S3Backend({ bucket: 'no-such-backend-bucket', prefix: '', endpoint: moto.endpoint, region: 'us-east-1', forcePathStyle: true, accessKeyId: 'a', secretAccessKey: 'b' }, silentLogger);
  await t.rejects(b.init(), { message: /backend bucket "no-such-backend-bucket" .* does not exist/ });
  await b.close();
  const down = new S3Backend({ bucket: 'x', prefix: '', endpoint: 'http://127.0.0.1:9', region: 'us-east-1', forcePathStyle: true, accessKeyId: 'a', secretAccessKey: 'b', maxAttempts: 1 }, silentLogger);
  await t.rejects(down.init(), { message: /is not reachable/ });
  await down.close();
});
