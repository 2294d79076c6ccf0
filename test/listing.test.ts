import t from 'tap';
import { compareKeys, paginate } from '../src/engine/listing.js';

const keys = ['a', 'a/b', 'a/c/d', 'a/c/e', 'b', 'b/x', 'c', 'd/'].sort(compareKeys);

const cases: { name: string; req: Parameters<typeof paginate>[1]; keys: string[]; prefixes: string[]; truncated: boolean; last?: string }[] = [
  { name: 'everything', req: { prefix: '', delimiter: '', after: '', maxKeys: 1000 }, keys, prefixes: [], truncated: false, last: 'd/' },
  { name: 'delimiter at top', req: { prefix: '', delimiter: '/', after: '', maxKeys: 1000 }, keys: ['a', 'b', 'c'], prefixes: ['a/', 'b/', 'd/'], truncated: false, last: 'd/' },
  { name: 'prefix + delimiter', req: { prefix: 'a/', delimiter: '/', after: '', maxKeys: 1000 }, keys: ['a/b'], prefixes: ['a/c/'], truncated: false, last: 'a/c/' },
  { name: 'max-keys counts prefixes', req: { prefix: '', delimiter: '/', after: '', maxKeys: 2 }, keys: ['a'], prefixes: ['a/'], truncated: true, last: 'a/' },
  { name: 'resume after a common prefix', req: { prefix: '', delimiter: '/', after: 'a/', maxKeys: 2 }, keys: ['b'], prefixes: ['b/'], truncated: true, last: 'b/' },
  { name: 'marker inside the list', req: { prefix: '', delimiter: '', after: 'a/c/d', maxKeys: 2 }, keys: ['a/c/e', 'b'], prefixes: [], truncated: true, last: 'b' },
  { name: 'marker before prefix', req: { prefix: 'b', delimiter: '', after: 'a', maxKeys: 10 }, keys: ['b', 'b/x'], prefixes: [], truncated: false, last: 'b/x' },
  { name: 'max-keys 0', req: { prefix: '', delimiter: '', after: '', maxKeys: 0 }, keys: [], prefixes: [], truncated: false },
  { name: 'no match', req: { prefix: 'zz', delimiter: '', after: '', maxKeys: 10 }, keys: [], prefixes: [], truncated: false },
  { name: 'multi-char delimiter', req: { prefix: '', delimiter: 'c/', after: '', maxKeys: 10 }, keys: ['a', 'a/b', 'b', 'b/x', 'c', 'd/'], prefixes: ['a/c/'], truncated: false, last: 'd/' },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const page = paginate(keys, c.req);
    t.same(page.keys, c.keys);
    t.same(page.commonPrefixes, c.prefixes);
    t.equal(page.truncated, c.truncated);
    t.equal(page.last, c.last);
  });
}

t.test('UTF-8 binary order', async (t) => {
  // U+FF21 (3 bytes in UTF-8) sorts before U+1F600 (4 bytes), although its
  // UTF-16 code unit is larger than the surrogate's.
  const ks = ['\u{1F600}', '\uFF21', 'a', 'a-b', 'a.b'];
  t.same([...ks].sort(compareKeys), ['a', 'a-b', 'a.b', '\uFF21', '\u{1F600}']);
});
