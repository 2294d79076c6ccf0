import { execa } from 'execa';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { cliBucketMap, ConfigError } from '../src/config/config.js';
import { listCliPage } from '../src/engine/cli-layout/list.js';
import { checkCliKey, describe, parseCreated, userKeyOf } from '../src/engine/cli-layout/names.js';
import { parseXdeltaHeader } from '../src/engine/cli-layout/vcdiff.js';
import { compareKeys, paginate } from '../src/engine/listing.js';
import type { BlobInfo } from '../src/storage/backend.js';
import type { PlainStore } from '../src/storage/plain.js';
import { tempDir } from './helpers/proxy.js';

// The pieces of the CLI layout that need no S3 server: names, the VCDIFF
// header check, and listing order (against a plain sort of the user keys).

t.test('key mapping and refusals', async (t) => {
  t.equal(userKeyOf('a/b.zip.delta'), 'a/b.zip');
  t.equal(userKeyOf('a/b.zip'), 'a/b.zip');
  t.equal(userKeyOf('a/reference.bin'), null);
  t.equal(userKeyOf('reference.bin'), null);
  t.equal(userKeyOf('.deltaglider/stats_quick.json'), null);
  for (const k of ['x.delta', 'a/reference.bin', 'reference.bin', '.deltaglider/a']) t.throws(() => checkCliKey(k), { code: 'InvalidArgument' }, k);
  for (const k of ['x.deltas', 'a/reference.bin2', 'deltaglider/a', 'a/']) t.doesNotThrow(() => checkCliKey(k), k);
});

t.test("the CLI's timestamps", async (t) => {
  const fallback = new Date(0);
  t.equal(parseCreated('2026-11-22T05:09:43.903862', fallback), '2026-11-22T05:09:43.903Z', 'naive UTC, microseconds');
  t.equal(parseCreated('2026-11-22T05:09:37.257220Z', fallback), '2026-11-22T05:09:37.257Z');
  t.equal(parseCreated('garbage', fallback), fallback.toISOString());
  t.equal(parseCreated(undefined, fallback), fallback.toISOString());
});

t.test('describe: sizes, ETags, metadata', async (t) => {
  const sha = 'ab'.repeat(32);
  const delta = describe('r/x.zip', {
    key: 'r/x.zip.delta', size: 10, lastModified: new Date(1000), etag: 'ff'.repeat(16), headers: {},
    metadata: { 'dg-file-sha256': sha, 'dg-file-size': '500', 'dg-ref-sha256': sha, 'dg-ref-key': 'r/reference.bin', build: '7', 'dg-proxy-checksum-crc32': 'AAAA' },
  }, 'delta', 'b');
  t.equal(delta.size, 500);
  t.equal(delta.stored_size, 10);
  t.equal(delta.etag, `${sha.slice(0, 32)}-1`);
  t.same(delta.user_metadata, { build: '7' });
  t.same(delta.checksums, { crc32: 'AAAA' });
  const legacy = describe('y.txt', { key: 'y.txt', size: 3, lastModified: new Date(1000), etag: '0'.repeat(32), headers: {}, metadata: { file_sha256: sha, compression: 'none' } }, 'direct', 'b');
  t.equal(legacy.sha256, sha, 'older bare spellings');
  t.same(legacy.user_metadata, {});
  t.equal(legacy.etag, '0'.repeat(32));
  t.throws(() => describe('z.zip', { key: 'z.zip.delta', size: 1, lastModified: new Date(), etag: '', headers: {}, metadata: {} }, 'delta', 'b'));
  // A size no object can have is refused (501 with the reason), never sent as a Content-Length.
  for (const bad of ['-5', '1.5', 'abc', '99999999999999999999']) {
    t.throws(
      () => describe('n.zip', { key: 'n.zip.delta', size: 1, lastModified: new Date(), etag: '', headers: {}, metadata: { 'dg-file-sha256': sha, 'dg-file-size': bad, 'dg-ref-sha256': sha } }, 'delta', 'b'),
      { name: 'UnsupportedFormatError' },
      `dg-file-size ${bad}`,
    );
  }
  const parts = (v: string) => describe('p.bin', { key: 'p.bin', size: 3, lastModified: new Date(), etag: '', headers: {}, metadata: { 'dg-proxy-part-sizes': v } }, 'direct', 'b').part_sizes;
  t.same(parts('1,2'), [1, 2]);
  t.equal(parts('4,-1'), undefined, 'negative part sizes are ignored');
});

t.test('VCDIFF application header: external compression', async (t) => {
  const dir = await tempDir(t);
  const a = path.join(dir, 'a.txt');
  const b = path.join(dir, 'b.txt');
  await fsp.writeFile(a, 'hello world\n'.repeat(5000));
  await fsp.writeFile(b, 'hello world\n'.repeat(5001));
  await execa('gzip', ['-k', a, b]);
  const hdr = async (args: string[], src: string, dst: string) => {
    const out = path.join(dir, `d${Math.random()}`);
    await execa('xdelta3', ['-e', '-f', ...args, '-s', src, dst, out]);
    return parseXdeltaHeader((await fsp.readFile(out)).subarray(0, 4096));
  };
  t.same(await hdr([], `${a}.gz`, `${b}.gz`), { targetComp: 'G', sourceComp: 'G' }, 'without -D');
  t.same(await hdr(['-D'], `${a}.gz`, `${b}.gz`), { targetComp: '', sourceComp: '' }, 'with -D');
  t.same(await hdr(['-A'], a, b), { targetComp: '', sourceComp: '' }, 'no application header');
  t.equal(parseXdeltaHeader(Buffer.from('PK\x03\x04')), null);
});

t.test('backend.cli_buckets', async (t) => {
  t.same([...cliBucketMap({ cliBuckets: ['rel', 'old=old-bucket'], s3Bucket: 'native' })], [['rel', 'rel'], ['old', 'old-bucket']]);
  t.throws(() => cliBucketMap({ cliBuckets: ['rel'], s3Bucket: '' }), ConfigError, 'S3 backend only');
  t.throws(() => cliBucketMap({ cliBuckets: ['Bad_Name'], s3Bucket: 'n' }), ConfigError);
  t.throws(() => cliBucketMap({ cliBuckets: ['a-b', 'a-b=c-d'], s3Bucket: 'n' }), ConfigError, 'twice');
  t.throws(() => cliBucketMap({ cliBuckets: ['x=native'], s3Bucket: 'native' }), ConfigError, 'not the native bucket');
});

/** Stored names in S3's order, as a PlainStore lists them. */
function memoryStore(names: string[]): PlainStore {
  const sorted = [...names].sort(compareKeys);
  return {
    async *list(_b: string, o: { prefix: string; startAfter?: string }): AsyncIterable<BlobInfo> {
      for (const name of sorted) {
        if (!name.startsWith(o.prefix) || (o.startAfter !== undefined && compareKeys(name, o.startAfter) <= 0)) continue;
        yield { name, size: 1, lastModified: new Date(0) };
      }
    },
  } as unknown as PlainStore;
}

t.test('listing order matches a plain sort of the user keys (random names)', async (t) => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = ['a', 'b', '-', '.', '/', ' ', 'd', 'z', '.delta'];
  for (let round = 0; round < 60; round++) {
    const keys = new Set<string>();
    while (keys.size < 25) {
      let k = '';
      for (let i = 0, n = 1 + rnd(5); i < n; i++) k += alphabet[rnd(alphabet.length)];
      if (userKeyOf(k) === k && !k.endsWith('.delta')) keys.add(k);
    }
    const stored = [...keys].map((k) => (rnd(2) ? `${k}.delta` : k));
    const user = [...keys].sort(compareKeys);
    const delimiter = rnd(2) ? '/' : '';
    const prefix = rnd(3) === 0 ? 'a' : '';
    const maxKeys = 1 + rnd(6);
    const store = memoryStore([...stored, 'reference.bin', 'a/reference.bin']);
    let after = '';
    const got: string[] = [];
    const want: string[] = [];
    for (let page = 0; page < 40; page++) {
      const req = { prefix, delimiter, after, maxKeys };
      const mine = (await listCliPage(store, 'b', req)).page;
      const ref = paginate(user, req);
      got.push(...mine.keys, ...mine.commonPrefixes.map((p) => `P:${p}`));
      want.push(...ref.keys, ...ref.commonPrefixes.map((p) => `P:${p}`));
      if (!ref.truncated || !ref.last) break;
      after = ref.last;
    }
    t.same(got, want, `round ${round}`);
  }
});
