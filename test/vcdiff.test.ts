import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { Codec } from '../src/engine/codec.js';
import { largestSourceSegment } from '../src/engine/vcdiff.js';
import { tempDir } from './helpers/proxy.js';

// The VCDIFF window scan (src/engine/vcdiff.ts) and the decode buffer sized
// from it: exact bytes whatever the copy pattern, the whole reference when
// the scan cannot tell, and never a guess from a file it does not follow.

const MIB = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function codec(): Codec {
  return new Codec({ binary: 'xdelta3', level: 1, secondary: 'default', maxWindow: 2048 * MIB, pool: { maxProcesses: 2 } });
}

async function decodeAll(c: Codec, ref: string, refSize: number, delta: string, segment?: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const ch of c.decode(ref, refSize, delta, undefined, segment)) chunks.push(ch as Buffer);
  return Buffer.concat(chunks);
}

t.test('scan: local copies, scattered copies, and files it does not follow', async (t) => {
  const dir = await tempDir(t);
  const c = codec();
  const refBuf = randomBytes(24 * MIB);
  const ref = path.join(dir, 'ref');
  await fsp.writeFile(ref, refBuf);

  // 1 % rewritten in place: each 8 MiB target window copies from about its own 8 MiB.
  const local = Buffer.from(refBuf);
  for (let i = 0; i < 4; i++) randomBytes(64 * 1024).copy(local, i * 6 * MIB + 12345);
  // 200-byte slices from anywhere: every window reaches across the reference.
  const scattered = Buffer.alloc(8 * MIB);
  for (let at = 0; at < scattered.length; at += 200) refBuf.copy(scattered, at, (at * 7919) % (refBuf.length - 200), ((at * 7919) % (refBuf.length - 200)) + 200);

  for (const [name, target, low, high] of [
    ['local', local, 4 * MIB, 9 * MIB],
    ['scattered', scattered, 20 * MIB, 24 * MIB],
  ] as const) {
    await fsp.writeFile(path.join(dir, name), target);
    const delta = path.join(dir, `${name}.vcdiff`);
    await c.encode(ref, refBuf.length, path.join(dir, name), delta);
    const seg = await largestSourceSegment(delta);
    t.ok(seg !== null && seg >= low && seg <= high, `${name}: largest segment ${seg} in [${low}, ${high}]`);
    const window = c.decodeWindow(refBuf.length, seg ?? undefined);
    t.ok(window >= 2 * seg! || window === c.window(refBuf.length), `${name}: -B ${window} holds twice the segment, or the whole reference`);
    t.equal(sha(await decodeAll(c, ref, refBuf.length, delta, seg ?? undefined)), sha(target), `${name}: exact bytes with the sized buffer`);
    // A hint that is too small (a damaged sidecar) costs time, never bytes.
    t.equal(sha(await decodeAll(c, ref, refBuf.length, delta, 0)), sha(target), `${name}: exact bytes with a 1 MiB buffer`);

    const bytes = await fsp.readFile(delta);
    await fsp.writeFile(path.join(dir, 'cut'), bytes.subarray(0, bytes.length - 3));
    t.equal(await largestSourceSegment(path.join(dir, 'cut')), null, `${name}: a truncated delta is not followed`);
    await fsp.writeFile(path.join(dir, 'long'), Buffer.concat([bytes, Buffer.from([0x01, 0x80])]));
    t.equal(await largestSourceSegment(path.join(dir, 'long')), null, `${name}: trailing bytes are not followed`);
  }
  t.equal(await largestSourceSegment(ref), null, 'not a VCDIFF');
  t.equal(await largestSourceSegment(path.join(dir, 'missing')), null, 'no file');
  await fsp.writeFile(path.join(dir, 'empty'), '');
  t.equal(await largestSourceSegment(path.join(dir, 'empty')), null, 'empty file');
});

t.test('decode window: sized from the segment, bounded by the reference window', async (t) => {
  const c = codec();
  const full = c.window(100 * MIB);
  t.equal(c.decodeWindow(100 * MIB), full, 'no hint: the whole reference');
  t.equal(c.decodeWindow(100 * MIB, 0), MIB, 'no source copies: 1 MiB');
  t.equal(c.decodeWindow(100 * MIB, 8 * MIB), 16 * MIB, '8 MiB segments: 16 MiB');
  t.equal(c.decodeWindow(100 * MIB, 8 * MIB + 1), 32 * MIB, 'rounded up to a power of two');
  t.equal(c.decodeWindow(100 * MIB, 90 * MIB), full, 'never above the reference window');
  for (const bad of [-1, Number.NaN, 1.5, Number.MAX_VALUE, 2 ** 60]) t.equal(c.decodeWindow(100 * MIB, bad), full, `hint ${bad}: the whole reference`);
});
