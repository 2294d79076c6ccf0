import t from 'tap';
import { SEGMENT_MAX, decodeComponents, encodeName, encodePrefixDir } from '../src/storage/filesystem/names.js';

const NAMES = [
  'a/b.delta', '', '/', '//', '.', '..', 'a/../b', '%', '%%x', '%25', 'a%/b', 'x.delta/y.direct', 'x.delta',
  'dir/.direct', 'tab\t/nl\n', `${'z'.repeat(SEGMENT_MAX * 3 + 7)}.meta`, `${'é'.repeat(400)}/x`, '😀/%2E',
  'reference.bin/reference.bin', 'end%', 'end%+', 'a+/b',
];

t.test('names round-trip and never escape the bucket', async (t) => {
  for (const name of NAMES) {
    const comps = encodeName(name);
    t.equal(decodeComponents(comps), name, JSON.stringify(name.slice(0, 30)));
    for (const c of comps) {
      t.ok(c !== '' && c !== '.' && c !== '..' && !c.includes('/') && !c.includes('\0'), `safe component ${JSON.stringify(c.slice(0, 30))}`);
      t.ok(Buffer.byteLength(c) <= SEGMENT_MAX + 3, 'fits NAME_MAX');
      t.notOk(c.startsWith('%%'), 'never an internal name');
    }
  }
});

t.test('directories never collide with files', async (t) => {
  // Key 'a' is file 'a.delta'; key 'a.delta/x' lives in a directory.
  const file = encodeName('a.delta');
  const dir = encodeName('a.delta/x.delta');
  t.not(dir[0], file[0]);
});

t.test('prefix directories', async (t) => {
  t.same(encodePrefixDir('a/b/c'), ['a', 'b']);
  t.same(encodePrefixDir('a/'), ['a']);
  t.same(encodePrefixDir('abc'), []);
  t.same(encodePrefixDir(''), []);
});

t.test('foreign and internal names decode to null', async (t) => {
  t.equal(decodeComponents(['%%tmp-1']), null);
  t.equal(decodeComponents(['dir', '%%bucket.json']), null);
});
