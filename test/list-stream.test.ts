import t from 'tap';
import { Lister, releasePoint } from '../src/engine/list.js';
import type { ObjectMeta } from '../src/engine/meta.js';
import type { Backend } from '../src/storage/backend.js';
import { compareKeys, paginate } from '../src/engine/listing.js';
import { rng } from '../bench/corpus.js';

// The streamed listing (backends that list in order) against the plain sort:
// random keys over an alphabet full of the characters that sort below '.',
// every page of every listing must match.

const ALPHABET = [' ', '!', '-', '.', '/', 'a', 'b', 'z', 'é'];

/** 5 to 64 distinct short keys over ALPHABET. */
function randomKeys(r: () => number): Set<string> {
  const keys = new Set<string>();
  const n = 5 + Math.floor(r() * 60);
  while (keys.size < n) keys.add(Array.from({ length: 1 + Math.floor(r() * 5) }, () => ALPHABET[Math.floor(r() * ALPHABET.length)]).join(''));
  return keys;
}

/** `chunk`: names per list call, as S3 lists (1000), with callEnd asked between calls; `plainKeys`: sidecars only (blobs kept apart). */
function fakeEngine(keys: string[], chunk = 0, plainKeys = false): { engine: { listObjects: Lister['list'] }; scanned: () => number; calls: () => number } {
  // Format 1 sidecars for some keys, format 2 (`.object.meta` and an
  // immutable blob) for others: one listing must order both.
  const blobs = plainKeys
    ? keys.map((k) => `${k}.object.meta`)
    : keys.flatMap((k, i) =>
        i % 3 === 1 ? [`${k}.0123456789abcdef.direct.bin`, `${k}.object.meta`] : [`${k}.${i % 3 === 0 ? 'delta' : 'direct'}`, `${k}.${i % 3 === 0 ? 'delta' : 'direct'}.meta`],
      );
  if (!plainKeys) blobs.push('reference.bin', 'reference.bin.meta', 'a/reference.bin.meta', 'reference.meta', 'reference.0123456789abcdef.bin');
  blobs.sort(compareKeys);
  let scanned = 0;
  let calls = 0;
  const backend = {
    async *listSorted(_b: string, o: { prefix: string; startAfter?: string; callEnd?: (more: boolean) => boolean }) {
      const names = blobs.filter((name) => name.startsWith(o.prefix) && (o.startAfter === undefined || compareKeys(name, o.startAfter) > 0));
      calls++;
      for (const [i, name] of names.entries()) {
        scanned++;
        yield { name, size: 1, lastModified: new Date(0), etag: 'e' };
        if (chunk && (i + 1) % chunk === 0 && i + 1 < names.length) {
          if (o.callEnd?.(true)) return;
          calls++;
        }
      }
    },
    async head(_b: string, name: string) {
      return blobs.includes(name) ? { name, size: 1, lastModified: new Date(0), etag: 'e' } : null;
    },
    async readSmall(_b: string, name: string) {
      const key = name.replace(/\.object\.meta$/, '');
      return { etag: 'e', body: Buffer.from(JSON.stringify({ format: 2, key, size: 1, sha256: '', md5: '', etag: 'x', created: '', stored: [{ kind: 'direct', blob: 'b', size: 1, etag: 'e' }] })) };
    },
  } as unknown as Backend;
  const lister = new Lister(
    backend,
    async () => ({ name: 'b', created: new Date(0) }),
    async (_b: string, key: string) => ({ key }) as ObjectMeta,
  );
  return { engine: { listObjects: (i) => lister.list(i) }, scanned: () => scanned, calls: () => calls };
}

t.test('release points', async (t) => {
  t.equal(releasePoint('abc'), 'abc.object.meta');
  t.equal(releasePoint('a-b'), 'a.object.meta', "waits for key 'a', whose blob sorts after a-b's");
  t.equal(releasePoint('a b-c'), 'a.object.meta');
});

t.test('streamed pages equal sorted pages', async (t) => {
  const r = rng(7);
  for (let round = 0; round < 40; round++) {
    const keys = randomKeys(r);
    const sorted = [...keys].sort(compareKeys);
    const { engine } = fakeEngine([...keys]);
    for (const [prefix, delimiter] of [['', ''], ['', '/'], ['a', ''], ['a', '-'], ['', '.']]) {
      for (const maxKeys of [1, 3, 1000]) {
        let after = '';
        const got: string[] = [];
        const want: string[] = [];
        for (let pageNo = 0; pageNo < 200; pageNo++) {
          const page = await engine.listObjects({ bucket: 'b', prefix, delimiter, after, maxKeys });
          const expected = paginate(sorted, { prefix, delimiter, after, maxKeys });
          got.push(...page.objects.map((o) => o.key), ...page.commonPrefixes.map((p) => `CP:${p}`));
          want.push(...expected.keys, ...expected.commonPrefixes.map((p) => `CP:${p}`));
          if (page.truncated !== expected.truncated || page.last !== expected.last) {
            t.fail(`round ${round} ${JSON.stringify({ prefix, delimiter, maxKeys, after })}: truncated/last differ`);
            break;
          }
          if (!page.truncated) break;
          after = page.last!;
        }
        if (JSON.stringify(got) !== JSON.stringify(want)) t.same(got, want, `round ${round} ${JSON.stringify({ prefix, delimiter, maxKeys })}`);
      }
    }
  }
  t.pass('all listings matched');
});

t.test('listing in calls: a page ends where a call does, and the pages together are the listing', async (t) => {
  const r = rng(11);
  for (let round = 0; round < 30; round++) {
    const keys = randomKeys(r);
    const sorted = [...keys].sort(compareKeys);
    for (const chunk of [1, 2, 7]) {
      const { engine } = fakeEngine([...keys], chunk);
      for (const [prefix, delimiter] of [['', ''], ['', '/'], ['a', '-'], ['', '.']]) {
        for (const maxKeys of [1, 3, 1000]) {
          let after = '';
          const got: string[] = [];
          const want = paginate(sorted, { prefix, delimiter, after: '', maxKeys: 1e9 });
          let pages = 0;
          for (; pages < 500; pages++) {
            const page = await engine.listObjects({ bucket: 'b', prefix, delimiter, after, maxKeys });
            const entries = page.objects.length + page.commonPrefixes.length;
            if (entries > maxKeys || (page.truncated && (entries === 0 || page.last === undefined))) {
              t.fail(`round ${round} ${JSON.stringify({ chunk, prefix, delimiter, maxKeys, after })}: ${entries} entries, truncated ${page.truncated}`);
              break;
            }
            // Keys and common prefixes in listing order, as one sorted run.
            got.push(...[...page.objects.map((o) => o.key), ...page.commonPrefixes].sort(compareKeys));
            if (!page.truncated) break;
            after = page.last!;
          }
          const all = [...want.keys, ...want.commonPrefixes].sort(compareKeys);
          if (JSON.stringify(got) !== JSON.stringify(all)) t.same(got, all, `round ${round} ${JSON.stringify({ chunk, prefix, delimiter, maxKeys })}`);
        }
      }
    }
  }
  t.pass('all listings matched');
  // Sidecars only (the S3 backend keeps blobs apart), 1000 names a call:
  // every page is one call.
  const keys = Array.from({ length: 4500 }, (_, i) => `many/obj-${String(i).padStart(7, '0')}.txt`);
  const f = fakeEngine(keys, 1000, true);
  let after = '';
  const sizes: number[] = [];
  for (;;) {
    const before = f.calls();
    const page = await f.engine.listObjects({ bucket: 'b', prefix: 'many/', delimiter: '', after, maxKeys: 1000 });
    t.equal(f.calls() - before, 1, `page ${sizes.length + 1}: one list call`);
    sizes.push(page.objects.length);
    if (!page.truncated) break;
    after = page.last!;
  }
  t.same(sizes, [1000, 999, 999, 999, 503], 'each later page starts with the sidecar of the last key before it');
});

t.test('a page reads about a page of the backend', async (t) => {
  const keys = Array.from({ length: 5000 }, (_, i) => `k/${String(i).padStart(5, '0')}.zip`);
  const { engine, scanned } = fakeEngine(keys);
  const page = await engine.listObjects({ bucket: 'b', prefix: '', delimiter: '', after: 'k/02000.zip', maxKeys: 100 });
  t.equal(page.objects[0].key, 'k/02001.zip');
  t.ok(scanned() < 300, `${scanned()} blobs listed for a page of 100`);
  // Keys like obj-1 wait for a key `obj`, whose sidecar sorts after all of
  // them: it is looked up by name instead of streamed to.
  const dashed = Array.from({ length: 5000 }, (_, i) => `obj-${String(i).padStart(5, '0')}.zip`);
  for (const extra of [[], ['obj']]) {
    const f = fakeEngine([...dashed, ...extra]);
    const p = await f.engine.listObjects({ bucket: 'b', prefix: '', delimiter: '', after: '', maxKeys: 100 });
    t.same(p.objects.map((o) => o.key), [...extra, ...dashed].sort(compareKeys).slice(0, 100));
    t.ok(f.scanned() < 400, `${f.scanned()} blobs listed for a page of 100 (keys ${extra.join()})`);
  }
  const top = fakeEngine([...keys, 'z/1.zip']);
  const rolled = await top.engine.listObjects({ bucket: 'b', prefix: '', delimiter: '/', after: '', maxKeys: 1000 });
  t.same(rolled.commonPrefixes, ['k/', 'z/']);
  t.ok(top.scanned() < 50, `a rolled-up prefix is jumped over (${top.scanned()} blobs listed)`);
});
