import { createHash } from 'node:crypto';
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
  const expected = createHash('sha256');
  // A source much faster than file writes: each chunk made the moment it is asked for.
  const src = Readable.from(
    (function* () {
      for (let i = 0; i < 256; i++) {
        const c = Buffer.alloc(1 << 20, i);
        expected.update(c);
        yield c;
      }
    })(),
    { objectMode: false },
  );
  const base = process.memoryUsage().arrayBuffers;
  let peak = 0;
  const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers - base)), 5);
  const ahead = new DecodeAhead(path.join(dir, 'spool'), new SpoolBudget(1 << 30), () => {});
  ahead.attach(src);
  src.once('end', () => ahead.exitedOk());
  // The reader waits until the source has ended (all of it spooled), then reads.
  await new Promise((resolve) => src.once('end', resolve));
  peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
  clearInterval(sample);
  const got = createHash('sha256');
  let n = 0;
  for await (const c of ahead) {
    got.update(c as Buffer);
    n += (c as Buffer).length;
  }
  t.equal(n, 256 << 20);
  t.equal(got.digest('hex'), expected.digest('hex'), 'every byte, in order');
  // Bounded by MAX_UNWRITTEN plus chunks written but not yet collected: far below the 256 MiB spooled.
  t.ok(peak < MAX_UNWRITTEN + (88 << 20), `buffers grew at most ${(peak / 2 ** 20).toFixed(1)} MiB while 256 MiB were spooled`);
  t.same(await fsp.readdir(dir), [], 'the spool file is gone');
});
