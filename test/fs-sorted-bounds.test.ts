import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import t from 'tap';
import { rng } from '../bench/corpus.js';
import { compareKeys } from '../src/engine/listing.js';
import { FilesystemBackend } from '../src/storage/filesystem/fs-backend.js';
import { ExternalSort } from '../src/storage/filesystem/external-sort.js';
import { encodeSegment } from '../src/storage/filesystem/names.js';
import { MemoryDir, compareNames, compareEntries, entryOf, startIndices, type DirEntry, type SortedDir } from '../src/storage/filesystem/sorted-dir.js';
import { SortedLister } from '../src/storage/filesystem/sorted-list.js';
import { TINY, collect, descriptors, indexFiles, layOut, settle, until } from './helpers/fs-sorted.js';
import { tempDir } from './helpers/proxy.js';

// The filesystem sorted listing's costs stay bounded: where a page starts,
// when a directory goes to an index file, what a failed index costs, and
// what a read finishing after close leaves (./src/storage/filesystem/sorted-list.ts).

/** A directory that counts the entries it is asked for, and its searches. */
function counting(entries: DirEntry[]): { d: SortedDir; visits: () => number } {
  const inner = new MemoryDir('s', entries.sort(compareEntries), 0);
  let visits = 0;
  const d: SortedDir = {
    stamp: 's',
    length: inner.length,
    bytes: 0,
    at: (i) => (visits++, inner.at(i)),
    load: (i) => (visits++, inner.load(i)),
    lowerBound: (rel) => (visits++, inner.lowerBound(rel)),
    hold() {},
    release() {},
    drop() {},
  };
  return { d, visits: () => visits };
}

t.test('a page deep among long names sharing a prefix starts with a few searches', async (t) => {
  const x = 'x'.repeat(60);
  const files = Array.from({ length: 20_000 }, (_, i) => entryOf(`${x}${String(i).padStart(5, '0')}`, false)!);
  const { d, visits } = counting(files);
  const after = `${x}19990`;
  const seq = await startIndices(d, after);
  t.same(seq.map((i) => d.at(i)!.rel), [after], 'starts at the marker');
  t.ok(visits() < 20, `${visits()} entries and searches, not a walk back over 19,990`);

  // Continuation pieces (cut where 200 escaped bytes are reached, or 1-3
  // bytes short of it) and a directory 'seg/' below the marker are found, as
  // a scan of every entry below it finds them, next to files of equal names.
  const p1 = 'y'.repeat(190) + '%%%'; // 199 escaped bytes: a piece when a '%' (3) follows
  const p2 = p1 + 'y'; // 200
  const disk = [
    ...Array.from({ length: 3000 }, (_, i) => `${'y'.repeat(60)}${i}`),
    encodeSegment(p1, false)[0],
    encodeSegment(p1, false)[0] + '1',
    encodeSegment(p2, false)[0],
    'abc0',
    'z',
  ];
  const dirs = [encodeSegment(p1 + '%%', false)[0], encodeSegment(p2 + '9', false)[0], 'abc', encodeSegment('y'.repeat(300), false)[0]];
  const all = [...disk.map((n) => entryOf(n, false)!), ...dirs.map((n) => entryOf(n, true)!)];
  const c = counting(all);
  const sorted = Array.from({ length: c.d.length }, (_, i) => c.d.at(i)!);
  t.ok(sorted.filter((e) => e.rel === p1).length === 2 && sorted.some((e) => e.rel === p2 && e.dir), 'a file and a piece of one name');
  const reference = (rel: string) => {
    const lo = sorted.findIndex((e) => compareNames(e.rel, rel) >= 0);
    const before = sorted.flatMap((e, i) => (e.dir && i < (lo < 0 ? sorted.length : lo) && rel.startsWith(e.rel) ? [i] : []));
    return lo < 0 ? before : [...before, lo];
  };
  const markers = [`${p2}9z`, `${p1}%%a`, `${p1}%`, p1, `${p2}`, `${p2}0`, 'abc/q', 'abc/', `${'y'.repeat(200)}q`, `${'y'.repeat(60)}1500`];
  for (const m of markers) t.same(await startIndices(c.d, m), reference(m), JSON.stringify(m.replace(/y{10,}/, (r) => `y*${r.length}`)));
  t.equal(reference(`${p2}9z`).length, 3, 'a marker below two pieces');
});

t.test('pages deep among long shared-prefix names, from an index file, match a plain sort', async (t) => {
  const root = path.join(await tempDir(t), 'data');
  const b = new FilesystemBackend(root, { sortedList: { ...TINY, memoryBytes: 1 << 20 } });
  await b.init();
  await b.createBucket('bkt');
  const tails = ['%', 'é', 'a', '😀'];
  const names = [
    ...Array.from({ length: 1500 }, (_, i) => `p/${'x'.repeat(60)}${i}`),
    // Cut into pieces at several places: around 200 escaped bytes, with 1- to 4-byte units.
    ...Array.from({ length: 400 }, (_, i) => `p/${'x'.repeat(185 + (i % 20))}${tails[i % 4].repeat(1 + (i % 3))}${i}`),
  ];
  await layOut(root, names);
  await settle();
  const want = (await collect(b.list('bkt'))).map((x) => x.name).sort(compareKeys);
  t.equal(want.length, names.length);
  const r = rng(3);
  let bad = 0;
  for (let i = 0; i < 120; i++) {
    const pick = want[Math.floor(want.length / 2 + r() * (want.length / 2))];
    const after = r() < 0.5 ? pick : pick.slice(0, 60 + Math.floor(r() * (pick.length - 60)));
    const exp = want.filter((n) => compareKeys(n, after) > 0).slice(0, 30);
    const page: string[] = [];
    for await (const x of b.listSorted('bkt', { prefix: 'p/', startAfter: after })) if (page.push(x.name) >= 30) break;
    if (JSON.stringify(page) !== JSON.stringify(exp)) {
      bad++;
      t.same(page, exp, JSON.stringify(after));
    }
  }
  t.equal(bad, 0, 'every page matched');
  await b.close();
});

/** 300 names in one directory, 100 characters long: about 80 KB as entries in memory. */
const LONG = Array.from({ length: 300 }, (_, i) => `p/${'n'.repeat(100)}${(i * 7919) % 1000}`);

t.test('a directory of few but long names goes to an index file past a byte bound', async (t) => {
  const root = path.join(await tempDir(t), 'data');
  const opts = { ...TINY, memoryEntries: 1e6, runEntries: 1e6, spillBytes: 20_000 };
  const b = new FilesystemBackend(root, { sortedList: opts });
  await b.init();
  await b.createBucket('bkt');
  await layOut(root, LONG);
  await settle();
  t.same((await collect(b.listSorted('bkt', { prefix: 'p/' }))).map((x) => x.name), [...LONG].sort(compareKeys), 'in order (runs cut by bytes too, merged)');
  t.equal((await indexFiles(root)).length, 1, 'sorted into an index file, and kept');
  await b.close();
});

t.test('without room for an index file, a big directory is sorted in memory if the cache keeps it, refused if not', async (t) => {
  const root = path.join(await tempDir(t), 'data');
  await layOut(root, LONG);
  await settle();
  // Not a directory: every index write fails, as on a full disk.
  const indexDir = path.join(await tempDir(t), 'index');
  await fsp.writeFile(indexDir, 'x');
  const list = (l: SortedLister) => collect(l.list(path.join(root, 'bkt'), { prefix: 'p/' }));
  const fits = new SortedLister({ ...TINY, memoryBytes: 1 << 20, indexDir });
  t.equal((await list(fits)).length, LONG.length, 'listed');
  t.equal((await list(fits)).length, LONG.length, 'again');
  t.equal(fits.reads, 1, 'from memory the second time: the directory is read once');
  fits.close();

  const tooBig = new SortedLister({ ...TINY, memoryBytes: 40_000, indexDir });
  await t.rejects(list(tooBig), /takes more than the directory cache .* its index file cannot be written/, 'refused, not read and sorted for every page');
  tooBig.close();
});

t.test('a directory read finishing after close is not kept, and its index file goes', async (t) => {
  const root = path.join(await tempDir(t), 'data');
  const b = new FilesystemBackend(root, { sortedList: TINY });
  await b.init();
  await b.createBucket('bkt');
  await layOut(root, LONG);
  await settle();
  // Under way (past its first step) when the backend closes.
  const listing = collect(b.listSorted('bkt', { prefix: 'p/' }));
  await b.close();
  t.equal((await listing).length, LONG.length, 'the listing under way finishes');
  t.ok(await until(async () => (await indexFiles(root)).length === 0), 'its index file is removed');
  await descriptors(t, root, 0, 'and closed');
});

t.test('runs larger than a read chunk merge whole (records cut by a chunk end)', async (t) => {
  const blocks = new LRUCache<string, DirEntry[]>({ max: 1000 });
  const sort = new ExternalSort({ indexDir: await tempDir(t), blockEntries: 100, blocks });
  const r = rng(9);
  const names = Array.from({ length: 3000 }, (_, i) => `${'é%'.repeat(Math.floor(r() * 38))}${i}`);
  // Two runs of about 140 KB each (several 64 KB chunks), names escaped as on disk, under 200 bytes (not cut).
  for (const half of [names.slice(0, 1500), names.slice(1500)]) await sort.addRun(half.map((n) => entryOf(encodeSegment(n, false)[0], false)!), true);
  const d = await sort.finish('s');
  d.hold();
  const got: string[] = [];
  for (let i = 0; i < d.length; i++) got.push((await d.load(i)).rel);
  t.same(got, [...names].sort(compareNames));
  d.drop();
  d.release();
});
