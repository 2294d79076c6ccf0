import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { rng } from '../bench/corpus.js';
import { compareKeys } from '../src/engine/listing.js';
import { FilesystemBackend } from '../src/storage/filesystem/fs-backend.js';
import { encodeName } from '../src/storage/filesystem/names.js';
import { SortedLister } from '../src/storage/filesystem/sorted-list.js';
import { TINY, collect, descriptors, indexFiles, layOut, settle, until } from './helpers/fs-sorted.js';
import { tempDir } from './helpers/proxy.js';

// The filesystem's sorted listing against a plain sort of its unordered one:
// random names over characters that sort around '/', '.', '%' and the
// escapes, surrogate pairs against U+E000.., and segments long enough to be
// cut into continuation pieces (./src/storage/filesystem/names.ts).

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

// Big directories: sorted externally into index files (runs merged into
// blocks), with sizes made tiny so that a few thousand names take many runs,
// blocks and evictions (./src/storage/filesystem/sorted-dir.ts).

function bigNames(seed: number, count: number, top: string, nested = true): string[] {
  const r = rng(seed);
  const names = new Set<string>();
  while (names.size < count) {
    let n = Array.from({ length: 1 + Math.floor(r() * 6) }, () => ALPHABET[Math.floor(r() * ALPHABET.length)]).join('');
    if (nested && r() < 0.08) n = 'L'.repeat(195 + Math.floor(r() * 10)) + n;
    // Mostly one directory, with a few below it.
    if (!nested || r() < 0.9) n = n.replaceAll('/', '_');
    if (n.endsWith('/') || n.split('/').some((s) => s === '.' || s === '..')) n += 'x';
    names.add(`${top}${n}${r() < 0.5 ? '.meta' : '.bin'}`);
  }
  return [...names];
}

t.test('a big directory is listed from an index file, in order, from any marker', async (t) => {
  const root = path.join(await tempDir(t), 'data');
  const b = new FilesystemBackend(root, { sortedList: { ...TINY, memoryBytes: 1 << 20 } });
  await b.init();
  await b.createBucket('bkt');
  await layOut(root, bigNames(5, 2500, 'p/'));
  await settle();
  const want = (await collect(b.list('bkt'))).map((x) => x.name).sort(compareKeys);
  t.ok(want.length > 2000, `${want.length} names stored`);
  const got = async (prefix: string, startAfter?: string, suffixes?: string[]) => (await collect(b.listSorted('bkt', { prefix, startAfter, suffixes }))).map((x) => x.name);
  const [one, two] = await Promise.all([got('p/'), got('p/')]);
  t.same(one, want, 'whole');
  t.same(two, want, 'whole, at the same time');
  // Two listings at once share one read of each directory: as many reads as one listing alone.
  const lister = async () => {
    const l = new SortedLister({ ...TINY, memoryBytes: 1 << 20, indexDir: await tempDir(t) });
    await l.init();
    return l;
  };
  const names = async (l: SortedLister) => (await collect(l.list(path.join(root, 'bkt'), { prefix: 'p/' }))).map((x) => x.name);
  const [alone, together] = [await lister(), await lister()];
  t.same(await names(alone), want);
  t.same(await Promise.all([names(together), names(together)]), [want, want]);
  t.ok(alone.reads > 1, `${alone.reads} directories read by one listing`);
  t.equal(together.reads, alone.reads, 'and by two at the same time');
  alone.close();
  together.close();
  // The big directory, and the continuation piece 'LLL…' holding many names.
  t.equal((await indexFiles(root)).length, 2, 'an index file for each big directory');
  const r = rng(7);
  let bad = 0;
  for (let i = 0; i < 200; i++) {
    const pick = want[Math.floor(r() * want.length)];
    const after = r() < 0.6 ? pick : pick.slice(0, 2 + Math.floor(r() * (pick.length - 1)));
    const prefix = r() < 0.7 ? 'p/' : want[Math.floor(r() * want.length)].slice(0, 2 + Math.floor(r() * 3));
    const suffixes = r() < 0.3 ? ['.meta'] : undefined;
    const exp = want.filter((n) => n.startsWith(prefix) && compareKeys(n, after) > 0 && (!suffixes || n.endsWith('.meta')));
    // A page: the first entries only (the walk is returned early, as the engine does).
    const it = b.listSorted('bkt', { prefix, startAfter: after, suffixes });
    const page: string[] = [];
    for await (const x of it) if (page.push(x.name) >= 40) break;
    if (JSON.stringify(page) !== JSON.stringify(exp.slice(0, 40))) {
      bad++;
      t.same(page, exp.slice(0, 40), JSON.stringify({ prefix, after, suffixes }));
    }
  }
  t.equal(bad, 0, 'every marker and prefix matched');
  // Without surrogates anywhere, the runs sort and merge by UTF-16 units.
  const plain = Array.from({ length: 700 }, (_, i) => `a/k${(i * 7919) % 1000}${i % 3 ? 'é' : '~'}`);
  await layOut(root, plain);
  t.same(await got('a/'), plain.sort(compareKeys), 'plain names, merged');
  t.same(await got('p/', undefined, ['.meta']), want.filter((n) => n.endsWith('.meta')), 'suffix filter, whole');
  await descriptors(t, root, (await indexFiles(root)).length, 'pages returned early let go of their indexes (one descriptor each, the cache’s)');
  t.same((await b.listBuckets()).map((x) => x.name), ['bkt'], 'the index directory is not a bucket');
  await b.close();
  await descriptors(t, root, 0, 'closed');
});

t.test('index files go when their directory changes or is evicted, not under a running listing', async (t) => {
  const root = path.join(await tempDir(t), 'data');
  // Room for one index file's headers at a time.
  const b = new FilesystemBackend(root, { sortedList: { ...TINY, memoryBytes: 8000 } });
  await b.init();
  await b.createBucket('bkt');
  await layOut(root, [...bigNames(1, 1500, 'p/', false), ...bigNames(2, 1500, 'q/', false)]);
  await settle();
  const got = async (prefix: string) => (await collect(b.listSorted('bkt', { prefix, suffixes: ['.meta'] }))).map((x) => x.name);
  const p1 = await got('p/');
  t.ok(p1.length > 600);
  const first = await indexFiles(root);
  t.equal(first.length, 1);
  t.same(await got('p/'), p1, 'again, from the cache');
  t.same(await indexFiles(root), first, 'the same index file');

  // A listing part-way through the index when the directory changes.
  const running = b.listSorted('bkt', { prefix: 'p/', suffixes: ['.meta'] })[Symbol.asyncIterator]();
  const seen: string[] = [];
  for (let i = 0; i < 100; i++) seen.push((await running.next()).value!.name);
  await layOut(root, ['p/0-new.meta']);
  await settle();
  // Read again (the stamp changed, and the new read is kept): the old index is dropped.
  const p2 = await got('p/');
  t.same(p2, [...p1, 'p/0-new.meta'].sort(compareKeys), 'a write is seen');
  for (let n = await running.next(); !n.done; n = await running.next()) seen.push(n.value.name);
  t.same(seen, p1, 'the running listing finished on the index it started with');
  t.ok(await until(async () => (await indexFiles(root)).length === 1 && !(await indexFiles(root)).includes(first[0])), 'the old index file is gone');
  await descriptors(t, root, 1, 'and its descriptor closed');

  // Another big directory evicts this one.
  t.ok((await got('q/')).length > 600);
  t.ok(await until(async () => (await indexFiles(root)).length === 1), 'evicted: one index file left');
  await descriptors(t, root, 1, 'and one descriptor');
  t.same(await got('p/'), p2, 'read again after eviction');

  // A directory changed within the last instants is read for this listing only.
  await layOut(root, ['q/0-new.meta']);
  t.ok((await got('q/')).includes('q/0-new.meta'));
  t.ok(await until(async () => (await indexFiles(root)).length <= 1), 'a read not kept leaves no index file');
  await b.close();

  // No room for index files: sorted in memory instead.
  const full = new FilesystemBackend(root, { sortedList: TINY });
  await full.init();
  await fsp.rm(path.join(root, '.list-index'), { recursive: true });
  await fsp.writeFile(path.join(root, '.list-index'), 'not a directory');
  t.same(await collect(full.listSorted('bkt', { prefix: 'p/', suffixes: ['.meta'] })).then((x) => x.map((y) => y.name)), p2, 'listed without an index');
  await full.close();
  await fsp.rm(path.join(root, '.list-index'));
  await fsp.mkdir(path.join(root, '.list-index'));

  // Derived data: a new start clears what an earlier run left.
  await fsp.writeFile(path.join(root, '.list-index', '%%idx-stale'), 'x');
  const again = new FilesystemBackend(root, { sortedList: TINY });
  await again.init();
  t.same(await indexFiles(root), [], 'cleared at start-up');
  t.same(await collect(again.listSorted('bkt', { prefix: 'p/', suffixes: ['.meta'] })).then((x) => x.map((y) => y.name)), p2);
  await again.close();
});
