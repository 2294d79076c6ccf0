import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import * as zlib from 'node:zlib';
import t from 'tap';
import { inflateKnown } from '../src/engine/gzip/native-inflate.js';
import { tempDir } from './helpers/proxy.js';

// The gzip form's reference inflated with Node's zlib (src/engine/gzip/native-inflate.ts):
// used only when it gives exactly the recorded bytes, and never leaves a file otherwise.

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('exactly the recorded bytes, or false and no file', async (t) => {
  const dir = await tempDir(t);
  const raw = Buffer.concat([Buffer.from('hello '.repeat(50_000)), Buffer.from('world '.repeat(50_000))]);
  const half = raw.length / 2;
  const cases: [string, Buffer, number, string, boolean][] = [
    ['one member', zlib.gzipSync(raw), raw.length, sha(raw), true],
    ['two members and zero padding', Buffer.concat([zlib.gzipSync(raw.subarray(0, half)), zlib.gzipSync(raw.subarray(half)), Buffer.alloc(512)]), raw.length, sha(raw), true],
    ['other trailing bytes (pako keeps them; zlib refuses)', Buffer.concat([zlib.gzipSync(raw), Buffer.from('junk')]), raw.length, sha(raw), false],
    ['another SHA-256 recorded', zlib.gzipSync(raw), raw.length, sha(Buffer.from('x')), false],
    ['inflates to more than recorded', zlib.gzipSync(raw), raw.length - 1, sha(raw), false],
    ['inflates to less than recorded', zlib.gzipSync(raw), raw.length + 1, sha(raw), false],
    ['not gzip', raw.subarray(0, 1000), 1000, sha(raw.subarray(0, 1000)), false],
  ];
  for (const [name, gz, size, digest, ok] of cases) {
    const file = path.join(dir, 'ref.gz');
    const out = path.join(dir, 'out');
    await fsp.writeFile(file, gz);
    t.equal(await inflateKnown(file, out, size, digest), ok, name);
    if (ok) t.ok((await fsp.readFile(out)).equals(raw), `${name}: the bytes`);
    else await t.rejects(fsp.stat(out), `${name}: no file left`);
    await fsp.rm(out, { force: true });
  }
});

t.test('an abort is thrown, not reported as a mismatch, and leaves no file', async (t) => {
  const dir = await tempDir(t);
  const raw = Buffer.alloc(8 << 20, 'a');
  const file = path.join(dir, 'ref.gz');
  await fsp.writeFile(file, zlib.gzipSync(raw));
  const ac = new AbortController();
  ac.abort();
  await t.rejects(inflateKnown(file, path.join(dir, 'out'), raw.length, sha(raw), ac.signal), { name: 'AbortError' });
  t.same(await fsp.readdir(dir), ['ref.gz']);
});
