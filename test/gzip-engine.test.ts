import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import * as zlib from 'node:zlib';
import t, { type Test } from 'tap';
import { release } from '../bench/corpus.js';
import { Engine } from '../src/engine/engine.js';
import type { EngineOptions } from '../src/engine/types.js';
import { getBuffer, putBuffer, testEngine } from './helpers/engine.js';
import { listFiles, tempDir } from './helpers/proxy.js';

// The gzip stored form through the engine: successive .tgz releases are stored as
// deltas of their decompressed bytes, read back byte for byte (whole and ranged),
// and anything that does not reproduce goes the way it went before.

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const tgz = (v: number) => zlib.gzipSync(release('tar', v, 0.3), { level: 9 });

const engine = (t: Test, over: Partial<EngineOptions> = {}) => testEngine(t, { deltaExtensions: ['.tgz', '.tar', '.gz'], ...over });

const put = (e: Engine, key: string, body: Buffer) => putBuffer(e, 'bkt', key, body);

const get = (e: Engine, key: string, range?: { start: number; end: number }) => getBuffer(e, 'bkt', key, range);

t.test('successive .tgz releases: gzip form, small, byte-exact whole and ranged', async (t) => {
  const { e, data } = await engine(t);
  const bodies = [1, 2, 3].map(tgz);
  const metas = [];
  for (const [i, b] of bodies.entries()) metas.push(await put(e, `rel/v${i + 1}.tgz`, b));
  t.equal(metas[0].kind, 'delta', 'the first seeds the reference (a delta against itself)');
  for (const i of [1, 2]) {
    t.equal(metas[i].kind, 'gzip', `v${i + 1} stored in the gzip form`);
    t.ok(metas[i].stored_size < bodies[i].length * 0.2, `v${i + 1}: ${metas[i].stored_size} of ${bodies[i].length} bytes`);
  }
  for (const [i, b] of bodies.entries()) {
    t.equal(sha(await get(e, `rel/v${i + 1}.tgz`)), sha(b), `v${i + 1} whole`);
    const range = { start: Math.floor(b.length / 3), end: Math.floor(b.length / 3) + 70_000 };
    t.ok((await get(e, `rel/v${i + 1}.tgz`, range)).equals(b.subarray(range.start, range.end + 1)), `v${i + 1} ranged`);
  }
  // The sidecar carries the recipe and the reference it needs (docs/storage-format.md).
  const form = (await e.headObject('bkt', 'rel/v2.tgz')).stored[0] as { recipe?: { impl: { name: string } }; reference?: { inflate: boolean }; max_source_segment?: number };
  t.equal(form.recipe?.impl.name, 'pako');
  t.ok(Number.isSafeInteger(form.max_source_segment), 'records how far the delta reaches into the reference');
  t.equal(form.reference?.inflate, true, 'decoded against the reference decompressed');
  // Deleting everything collects the reference: the gzip form's delta blob counts as a delta.
  for (const i of [1, 2, 3]) await e.deleteObject('bkt', `rel/v${i}.tgz`);
  await e.gc.drain();
  t.same((await listFiles(path.join(data, 'bkt'))).map((f) => f.rel).filter((f) => !f.startsWith('%%')), [], 'nothing left');
});

t.test('what does not reproduce is stored as before (GNU gzip, disabled kind)', async (t) => {
  const { e } = await engine(t);
  const dir = await tempDir(t);
  await put(e, 'rel/v1.tgz', tgz(1));
  // Text, so that GNU gzip's own deflate shows (on incompressible input both
  // deflates store blocks alike, and such a stream may well reproduce).
  await fsp.writeFile(path.join(dir, 'v2.sql'), release('sql', 2, 0.3));
  const gnu = execFileSync('gzip', ['-9', '-n', '-c', path.join(dir, 'v2.sql')], { maxBuffer: 1 << 26 });
  const m = await put(e, 'rel/v2-gnu.tgz', gnu);
  t.not(m.kind, 'gzip', `GNU gzip: ${m.kind}`);
  t.equal(sha(await get(e, 'rel/v2-gnu.tgz')), sha(gnu));

  const off = await engine(t, { gzip: { enabled: false } });
  await put(off.e, 'rel/v1.tgz', tgz(1));
  const m2 = await put(off.e, 'rel/v2.tgz', tgz(2));
  t.not(m2.kind, 'gzip', 'gzip.enabled = false writes no gzip form');
  t.equal(sha(await get(off.e, 'rel/v2.tgz')), sha(tgz(2)));
});

t.test('a reference that is not gzip: the delta is made against its bytes as they are', async (t) => {
  const { e } = await engine(t);
  await put(e, 'rel/v1.tar', release('tar', 1, 0.3));
  const b = tgz(2);
  const m = await put(e, 'rel/v2.tgz', b);
  t.equal(m.kind, 'gzip');
  t.equal((m.stored[0] as { reference?: { inflate: boolean } }).reference?.inflate, false);
  t.equal(sha(await get(e, 'rel/v2.tgz')), sha(b));
});

t.test('deleting the last gzip-form object of a deltaspace collects its reference', async (t) => {
  const { e, data } = await engine(t);
  await put(e, 'rel/v1.tgz', tgz(1));
  t.equal((await put(e, 'rel/v2.tgz', tgz(2))).kind, 'gzip');
  // Replace the seeding object with plain bytes: only the gzip form uses the reference now.
  await put(e, 'other.bin', Buffer.from('x'));
  await e.deleteObject('bkt', 'rel/v1.tgz');
  await e.gc.drain();
  t.ok((await listFiles(path.join(data, 'bkt', 'rel'))).some((f) => f.rel.startsWith('reference.')), 'kept while the gzip form names it');
  t.equal(sha(await get(e, 'rel/v2.tgz')), sha(tgz(2)), 'still readable');
  await e.deleteObject('bkt', 'rel/v2.tgz');
  await e.gc.drain();
  const left = await listFiles(path.join(data, 'bkt', 'rel')).catch(() => []);
  t.same(left.map((f) => f.rel), [], 'collected after the last one');
});

t.test('a client gone away while the reference inflates with pako: the error is an abort, and no temp file is left', async (t) => {
  // No decoded cache: a decode into it is shared by its readers and outlives any one of them.
  const { e } = await engine(t, { decodedCacheBytes: 0 });
  // Bytes after the reference's last member: Node's zlib refuses it, so
  // pako's inflate runs (the zlib path's abort: gzip-native-inflate.test.ts).
  await put(e, 'rel/v1.tgz', Buffer.concat([tgz(1), Buffer.from('trailing bytes')]));
  t.equal((await put(e, 'rel/v2.tgz', tgz(2))).kind, 'gzip');
  const ac = new AbortController();
  ac.abort();
  const meta = await e.headObject('bkt', 'rel/v2.tgz');
  const err = await (async () => {
    for await (const c of await e.openObject('bkt', meta, undefined, ac.signal)) void c;
  })().then(
    () => null,
    (x: Error) => x,
  );
  t.equal(err?.name, 'AbortError', `${err?.name}: ${err?.message}`);
  t.same((await fsp.readdir(e.tmpDir)).filter((f) => f.startsWith('gunzip')), [], 'the partly inflated reference is gone');
});

t.test('a reference Node zlib will not inflate (bytes after its last member) is inflated as before', async (t) => {
  // No decoded cache, so every GET decodes again.
  const { e } = await engine(t, { decodedCacheBytes: 0 });
  await put(e, 'rel/v1.tgz', Buffer.concat([tgz(1), Buffer.from('trailing bytes')]));
  const v2 = tgz(2);
  t.equal((await put(e, 'rel/v2.tgz', v2)).kind, 'gzip');
  t.equal(sha(await get(e, 'rel/v2.tgz')), sha(v2), 'byte-exact');
  t.equal(sha(await get(e, 'rel/v2.tgz')), sha(v2), 'again');
});
