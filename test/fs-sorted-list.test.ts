import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { rng } from '../bench/corpus.js';
import { compareKeys } from '../src/engine/listing.js';
import { FilesystemBackend } from '../src/storage/filesystem/fs-backend.js';
import { encodeName } from '../src/storage/filesystem/names.js';
import { tempDir } from './helpers/proxy.js';

// The filesystem's sorted listing against a plain sort of its unordered one:
// random names over characters that sort around '/', '.', '%' and the
// escapes, surrogate pairs against U+E000.., and segments long enough to be
// cut into continuation pieces (./src/storage/filesystem/names.ts).

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const ALPHABET = ['a', 'b', '/', '.', '-', ' ', '%', '\x01', 'é', '\u{e000}', '😀', '.delta', '.meta'];

t.test('listSorted equals the sorted listing', async (t) => {
  const b = new FilesystemBackend(path.join(await tempDir(t), 'data'));
  await b.init();
  await b.createBucket('bkt');
  const r = rng(11);
  const names = new Set<string>();
  while (names.size < 300) {
    let n = Array.from({ length: 1 + Math.floor(r() * 6) }, () => ALPHABET[Math.floor(r() * ALPHABET.length)]).join('');
    if (r() < 0.1) n = 'L'.repeat(195 + Math.floor(r() * 10)) + n;
    if (n.endsWith('/') || n.split('/').some((s) => s === '.' || s === '..')) n += 'x';
    names.add(n);
  }
  const all = [...names];
  // A name and a directory of the same path cannot both exist as files: keep what the backend accepted.
  const stored: string[] = [];
  for (const n of all) {
    try {
      await b.putBytes('bkt', n, Buffer.from('x'));
      stored.push(n);
    } catch {
      // e.g. 'a' as a file and 'a/b' below it
    }
  }
  const want = (await collect(b.list('bkt'))).map((x) => x.name).sort(compareKeys);
  t.ok(want.length > 200, `${want.length} names stored`);
  const got = async (prefix: string, startAfter?: string) => (await collect(b.listSorted('bkt', { prefix, startAfter }))).map((x) => x.name);
  t.same(await got(''), want);
  let bad = 0;
  for (let i = 0; i < 150; i++) {
    const after = r() < 0.5 ? want[Math.floor(r() * want.length)] : want[Math.floor(r() * want.length)].slice(0, Math.floor(r() * 8));
    const prefix = r() < 0.5 ? '' : want[Math.floor(r() * want.length)].slice(0, Math.floor(r() * 4));
    const exp = want.filter((n) => n.startsWith(prefix) && compareKeys(n, after) > 0);
    const g = await got(prefix, after);
    if (JSON.stringify(g) !== JSON.stringify(exp)) {
      bad++;
      t.same(g, exp, JSON.stringify({ prefix, after }));
    }
  }
  t.equal(bad, 0, 'every prefix and start-after matched');
  await b.close();
});

t.test('a cached directory is read again when it changes', async (t) => {
  const root = path.join(await tempDir(t), 'data');
  const b = new FilesystemBackend(root);
  await b.init();
  await b.createBucket('bkt');
  for (const n of ['d/1.meta', 'd/3.meta']) await b.putBytes('bkt', n, Buffer.from('x'));
  // Old enough to be cached (recently changed directories are never kept).
  const dir = path.join(root, 'bkt', ...encodeName('d/x').slice(0, -1));
  const old = new Date(Date.now() - 60_000);
  await fsp.utimes(dir, old, old);
  const names = async () => (await collect(b.listSorted('bkt', { prefix: 'd/', suffixes: ['.meta'] }))).map((x) => x.name);
  t.same(await names(), ['d/1.meta', 'd/3.meta']);
  t.same(await names(), ['d/1.meta', 'd/3.meta'], 'from the cache');
  await b.putBytes('bkt', 'd/2.meta', Buffer.from('x'));
  await b.putBytes('bkt', 'd/2.bin', Buffer.from('x'));
  t.same(await names(), ['d/1.meta', 'd/2.meta', 'd/3.meta'], 'a write is seen at once; suffixes filter');
  await b.delete('bkt', 'd/1.meta');
  t.same(await names(), ['d/2.meta', 'd/3.meta'], 'a delete too');

  // A change that sets the mtime back (utimes, rsync -t, a restore) is seen
  // too: the cache checks the inode's ctime, which nothing can set back.
  await fsp.utimes(dir, old, old);
  await new Promise((r) => setTimeout(r, 2600)); // past the racy window: the next read is kept
  t.same(await names(), ['d/2.meta', 'd/3.meta'], 'read and kept');
  await fsp.writeFile(path.join(dir, encodeName('d/4.meta').at(-1)!), 'x');
  await fsp.utimes(dir, old, old);
  t.same(await names(), ['d/2.meta', 'd/3.meta', 'd/4.meta'], 'a change behind an unchanged mtime is seen');
  await b.close();
});
