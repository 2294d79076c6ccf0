import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { DecodeAhead, MAX_UNWRITTEN, SpoolBudget } from '../src/engine/decode-ahead.js';
import { tempDir } from './helpers/proxy.js';

// The decode spool (src/engine/decode-ahead.ts) holds what a slow reader is
// not ready for in a file; what waits to be written to that file must stay
// bounded in memory, however far the decoder runs ahead of the disk.

t.test('a decoder far ahead of the disk is paused, not buffered in memory', async (t) => {
  const dir = await tempDir(t);
  const chunks = Array.from({ length: 64 }, () => randomBytes(1 << 20));
  const expected = createHash('sha256');
  for (const c of chunks) expected.update(c);
  // A source much faster than file writes: every chunk is ready at once.
  const src = Readable.from(chunks, { objectMode: false });
  const ahead = new DecodeAhead(path.join(dir, 'spool'), new SpoolBudget(1 << 30), () => {});
  ahead.attach(src);
  src.once('end', () => ahead.exitedOk());
  // The reader waits until the source has ended (all of it spooled), then reads.
  await new Promise((resolve) => src.once('end', resolve));
  const got = createHash('sha256');
  let n = 0;
  for await (const c of ahead) {
    got.update(c as Buffer);
    n += (c as Buffer).length;
  }
  t.equal(n, 64 << 20);
  t.equal(got.digest('hex'), expected.digest('hex'), 'every byte, in order');
  t.ok(ahead.maxUnwritten <= MAX_UNWRITTEN + (1 << 20), `at most ${(ahead.maxUnwritten / 2 ** 20).toFixed(1)} MiB waited to be written at once`);
  t.same(await fsp.readdir(dir), [], 'the spool file is gone');
});
