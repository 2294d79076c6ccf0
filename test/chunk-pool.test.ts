import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { execa } from 'execa';
import t from 'tap';
import { ChunkPool } from '../src/engine/chunk-pool.js';
import { Codec } from '../src/engine/codec.js';
import type { DecodeAhead } from '../src/engine/decode-ahead.js';
import { DecodedCache } from '../src/engine/decoded-cache.js';
import { sweepLinkDirs } from '../src/engine/output-link.js';
import { SmallObjectCache } from '../src/engine/small-cache.js';
import { tempDir } from './helpers/proxy.js';

/** uid and gid of nobody (Debian), for the tests that act as another user. */
const NOBODY = 65534;

// Decodes read into recycled buffers (src/engine/chunk-pool.ts,
// src/engine/output-link.ts). What must hold: a buffer is reused only after
// its chunk was handed back, so a consumer that keeps chunks (or never
// recycles) still has the exact bytes; one that recycles makes the decode
// run on a handful of buffers; and without a link the decode still works.

const MIB = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A reference of `size` random bytes, a target differing in a few places, and its delta, in `dir`. */
async function encodedPair(codec: Codec, dir: string, size: number) {
  const ref = randomBytes(size);
  const target = Buffer.from(ref);
  for (let at = 999; at < size; at += 3 * MIB) randomBytes(4096).copy(target, at);
  await fsp.writeFile(path.join(dir, 'ref'), ref);
  await fsp.writeFile(path.join(dir, 'target'), target);
  await codec.encode(path.join(dir, 'ref'), ref.length, path.join(dir, 'target'), path.join(dir, 'delta'));
  return { ref, target };
}

/**
 * Reads `r` by its 'data' events: the chunks as they came (their buffers may
 * have been reused since, when `recycle` handed each back once read), a copy
 * of the bytes taken at once, and how many distinct buffers they were in.
 */
async function drain(r: NodeJS.ReadableStream, recycle: boolean): Promise<{ kept: Buffer[]; bytes: Buffer; buffers: number }> {
  const kept: Buffer[] = [];
  const copies: Buffer[] = [];
  const buffers = new Set<ArrayBufferLike>();
  await new Promise<void>((resolve, reject) => {
    r.on('data', (c: Buffer) => {
      kept.push(c);
      copies.push(Buffer.from(c));
      buffers.add(c.buffer);
      if (recycle) ChunkPool.recycle(c);
    });
    r.once('end', resolve).once('error', reject);
  });
  return { kept, bytes: Buffer.concat(copies), buffers: buffers.size };
}

function codecIn(dir: string, over: Partial<ConstructorParameters<typeof Codec>[0]> = {}): Codec {
  return new Codec({ binary: 'xdelta3', level: 1, secondary: 'default', maxWindow: 2048 * MIB, spoolDir: dir, linkDir: dir, ...over });
}

t.test('a consumer that keeps every chunk and recycles none still has the exact bytes', async (t) => {
  const dir = await tempDir(t);
  const codec = codecIn(dir);
  const { ref, target } = await encodedPair(codec, dir, 24 * MIB);
  const out = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'), undefined, undefined, true) as DecodeAhead;
  const kept: Buffer[] = [];
  for await (const c of out) kept.push(c as Buffer);
  // Were a buffer reused without being handed back, an earlier chunk would now hold later bytes.
  t.equal(sha(Buffer.concat(kept)), sha(target), 'every chunk kept its bytes');
  t.ok(out.buffersMade !== undefined, 'read through the recycling link');
  const full = kept.filter((c) => c.length >= 64 << 10).length;
  t.ok(out.buffersMade! >= full, `a new buffer for each of the ${full} chunks kept that were not copied out (${out.buffersMade} made)`);
  t.same(await fsp.readdir(dir).then((n) => n.filter((x) => x.endsWith('.sock'))), [], 'no socket file left');
});

t.test('a consumer that recycles each chunk once done decodes on a few buffers', async (t) => {
  const dir = await tempDir(t);
  const codec = codecIn(dir);
  const { ref, target } = await encodedPair(codec, dir, 24 * MIB);
  const out = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'), undefined, undefined, true) as DecodeAhead;
  const h = createHash('sha256');
  let chunks = 0;
  for await (const c of out) {
    h.update(c as Buffer);
    chunks++;
    ChunkPool.recycle(c as Buffer);
  }
  t.equal(h.digest('hex'), sha(target), 'exact bytes');
  t.ok(out.buffersMade! <= 16, `${out.buffersMade} buffers for ${chunks} chunks`);
});

t.test('a slow consumer that recycles: chunks spooled to the file come back too, bytes exact', async (t) => {
  const dir = await tempDir(t);
  // Spools once 16 MiB wait in memory (MEMORY_AHEAD).
  const codec = codecIn(dir);
  const { ref, target } = await encodedPair(codec, dir, 40 * MIB);
  const out = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'), undefined, undefined, true) as DecodeAhead;
  const first = await new Promise<Buffer>((resolve) => out.once('data', resolve));
  out.pause();
  const h = createHash('sha256').update(first);
  await new Promise((r) => setTimeout(r, 1500));
  t.ok(out.spooled > 0, `${out.spooled} bytes spooled while the consumer waited`);
  ChunkPool.recycle(first);
  for await (const c of out) {
    h.update(c as Buffer);
    ChunkPool.recycle(c as Buffer);
  }
  t.equal(h.digest('hex'), sha(target), 'exact bytes');
});

t.test('without a link (a directory too deep for a socket address) the decode reads a plain pipe', async (t) => {
  const dir = await tempDir(t);
  const deep = path.join(dir, 'd'.repeat(60), 'e'.repeat(60));
  await fsp.mkdir(deep, { recursive: true });
  const codec = codecIn(dir, { linkDir: deep });
  const { ref, target } = await encodedPair(codec, dir, 4 * MIB);
  const out = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'), undefined, undefined, true) as DecodeAhead;
  const kept: Buffer[] = [];
  for await (const c of out) kept.push(c as Buffer);
  t.equal(sha(Buffer.concat(kept)), sha(target), 'exact bytes');
  t.equal(out.buffersMade, undefined, 'no recycling reader');
  t.match(codec.stats, { linked: 0, linkFailed: 1 }, 'counted as a fallback');
});

t.test('a decode abandoned mid-stream closes its link and leaves no process', async (t) => {
  const dir = await tempDir(t);
  const codec = codecIn(dir);
  const { ref } = await encodedPair(codec, dir, 24 * MIB);
  const out = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'), undefined, undefined, true);
  await new Promise((resolve) => out.once('data', resolve));
  out.destroy();
  const deadline = Date.now() + 5000;
  while (codec.stats.running > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(codec.stats.running, 0, 'xdelta3 gone');
  t.same((await fsp.readdir(dir)).filter((x) => x.endsWith('.sock') || x.startsWith('decode-')), [], 'no socket or spool file left');
});

t.test('recycle() takes back only whole chunks a pool made, once', async (t) => {
  const pool = new ChunkPool();
  const short = pool.take();
  short.fill(7, 0, 100);
  const copied = pool.chunk(short, 100);
  t.not(copied.buffer, short.buffer, 'a short read is copied out');
  t.same(copied, Buffer.alloc(100, 7));
  t.equal(pool.take(), short, 'and its buffer read into again at once');
  const a = pool.take();
  const chunk = pool.chunk(a, 70_000);
  ChunkPool.recycle(chunk.subarray(0, 50));
  ChunkPool.recycle(Buffer.alloc(10));
  t.not(pool.take(), a, 'a view or a foreign buffer does not free the buffer');
  ChunkPool.recycle(chunk);
  t.equal(pool.take(), a, 'the chunk itself does');
  ChunkPool.recycle(chunk);
  t.not(pool.take(), a, 'and only once');
  const b = pool.take();
  const c2 = pool.chunk(b, 70_000);
  pool.close();
  ChunkPool.recycle(c2);
  t.not(pool.take(), b, 'a closed pool reuses nothing');
});

t.test('the private socket directory is made again when a temp cleaner removed it', async (t) => {
  const dir = await tempDir(t);
  const codec = new Codec({ binary: 'xdelta3', level: 1, secondary: 'default', maxWindow: 2048 * MIB, spoolDir: dir });
  const { ref, target } = await encodedPair(codec, dir, 2 * MIB);
  const before = new Set(await fsp.readdir(os.tmpdir()));
  const decodeAll = async () => {
    const kept: Buffer[] = [];
    for await (const c of codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'), undefined, undefined, true)) kept.push(c as Buffer);
    return sha(Buffer.concat(kept));
  };
  t.equal(await decodeAll(), sha(target));
  t.match(codec.stats, { linked: 1, linkFailed: 0 });
  const made = (await fsp.readdir(os.tmpdir())).filter((n) => n.startsWith('dgp-link-') && !before.has(n));
  t.equal(made.length, 1, 'one private directory');
  t.same(await fsp.readdir(path.join(os.tmpdir(), made[0])), ['owner.json'], 'holding its record and no socket file once connected');
  t.equal(((await fsp.stat(path.join(os.tmpdir(), made[0]))).mode & 0o777).toString(8), '700', 'only this user may enter it');
  await fsp.rm(path.join(os.tmpdir(), made[0]), { recursive: true });
  t.equal(await decodeAll(), sha(target), 'the decode after: a pipe, same bytes');
  t.equal(await decodeAll(), sha(target), 'and the next');
  t.match(codec.stats, { linked: 2, linkFailed: 1 }, 'one fallback, then linked again');
});

t.test('socket directories of processes gone from this host are swept, nothing else', async (t) => {
  const base = await tempDir(t);
  const boot = (await fsp.readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
  const record = (over: object) => JSON.stringify({ pid: 2 ** 22 + 31, host: os.hostname(), bootId: boot, startedAt: 'x', process: 'p', instance: 'i', ...over });
  const dirs: Record<string, string | null> = {
    // A kill -9 of a proxy on this host: its pid is no process now.
    'dgp-link-dead': record({}),
    // A restarted container: our pid, another process's record.
    'dgp-link-samepid': record({ pid: process.pid, process: 'earlier' }),
    'dgp-link-alive': record({ pid: process.ppid }),
    'dgp-link-elsewhere': record({ host: 'another-host' }),
    'dgp-link-nobody-knows': null,
    'not-a-link-dir': record({}),
  };
  for (const [name, text] of Object.entries(dirs)) {
    await fsp.mkdir(path.join(base, name));
    if (text) await fsp.writeFile(path.join(base, name, 'owner.json'), text);
  }
  // A link to a directory that looks dead is not followed.
  const target = path.join(await tempDir(t), 'elsewhere');
  await fsp.mkdir(target);
  await fsp.writeFile(path.join(target, 'owner.json'), record({}));
  await fsp.symlink(target, path.join(base, 'dgp-link-link'));
  const swept = await sweepLinkDirs(base);
  t.same(swept.map((d) => path.basename(d)).sort(), ['dgp-link-dead', 'dgp-link-samepid']);
  t.same((await fsp.readdir(base)).sort(), ['dgp-link-alive', 'dgp-link-elsewhere', 'dgp-link-link', 'dgp-link-nobody-knows', 'not-a-link-dir']);
  t.ok(await fsp.stat(path.join(target, 'owner.json')), "the link's target is untouched");
});

t.test("another user's look-alike socket directory is left alone, and cannot reach ours", { skip: process.getuid?.() !== 0 ? 'needs root, to act as another user' : false }, async (t) => {
  const base = await tempDir(t);
  const boot = (await fsp.readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
  const theirs = path.join(base, 'dgp-link-theirs');
  await fsp.mkdir(theirs);
  await fsp.writeFile(path.join(theirs, 'owner.json'), JSON.stringify({ pid: 2 ** 22 + 32, host: os.hostname(), bootId: boot, startedAt: 'x', process: 'p', instance: 'i' }));
  await fsp.chown(theirs, NOBODY, NOBODY);
  t.same(await sweepLinkDirs(base), [], 'not ours to judge');
  t.ok(await fsp.stat(theirs));

  // This process's own directory: a decode makes it, then a socket listens in it.
  const dir = await tempDir(t);
  const codec = new Codec({ binary: 'xdelta3', level: 1, secondary: 'default', maxWindow: 2048 * MIB, spoolDir: dir });
  const { ref } = await encodedPair(codec, dir, MIB);
  for await (const c of codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'), undefined, undefined, true)) ChunkPool.recycle(c as Buffer);
  let mine: string | undefined;
  for (const n of await fsp.readdir(os.tmpdir())) {
    if (!n.startsWith('dgp-link-')) continue;
    const text = await fsp.readFile(path.join(os.tmpdir(), n, 'owner.json'), 'utf8').catch(() => '');
    if (text.includes(`"pid":${process.pid},`)) mine = path.join(os.tmpdir(), n);
  }
  t.ok(mine, "this process's directory");
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(path.join(mine!, 'probe.sock'), r));
  t.teardown(() => server.close());
  const probe = `const net = require('node:net'), fs = require('node:fs');
    let listed; try { fs.readdirSync(process.argv[1]); listed = 'listed'; } catch (e) { listed = e.code; }
    net.connect(process.argv[1] + '/probe.sock').on('connect', () => { console.log(listed, 'connected'); process.exit(0); }).on('error', (e) => { console.log(listed, e.code); process.exit(0); });`;
  const r = await execa(process.execPath, ['-e', probe, mine!], { uid: NOBODY, gid: NOBODY, reject: false, timeout: 10_000 });
  t.equal(r.stdout.trim(), 'EACCES EACCES', 'another user can neither list it nor connect');
});

t.test('the small-object cache keeps copies, not chunks that go back to a pool', async (t) => {
  const cache = new SmallObjectCache();
  const pool = new ChunkPool();
  const want = randomBytes(3 * 70_000);
  const chunks = [0, 1, 2].map((i) => {
    const b = pool.take();
    want.copy(b, 0, i * 70_000, (i + 1) * 70_000);
    return pool.chunk(b, 70_000);
  });
  const out = cache.capture('k', Readable.from(chunks, { objectMode: false }));
  let recycled = 0;
  out.on('data', (c: Buffer) => {
    // What a response does once a chunk is written, and the next read then.
    ChunkPool.recycle(c);
    const next = pool.take();
    if (chunks.some((x) => x.buffer === next.buffer)) recycled++;
    next.fill(0xee);
  });
  await new Promise((resolve) => out.once('end', resolve));
  t.equal(recycled, 3, 'each chunk went back to the pool and was written over');
  t.equal(sha(cache.bytes('k')!), sha(want), 'the kept bytes are the ones that passed');
});

t.test('a failing decode through a link errors, and decodes leave no descriptors open', { skip: process.platform !== 'linux' ? 'needs /proc/self/fd' : false }, async (t) => {
  const dir = await tempDir(t);
  const codec = codecIn(dir);
  const { ref, target } = await encodedPair(codec, dir, 4 * MIB);
  const fds = async () => (await fsp.readdir('/proc/self/fd')).length;
  const before = await fds();
  for (let i = 0; i < 20; i++) {
    const out = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'), undefined, undefined, true);
    if (i % 4 === 3) {
      // Abandoned after its first chunk.
      await new Promise((resolve) => out.once('data', resolve));
      out.destroy();
      continue;
    }
    const kept: Buffer[] = [];
    for await (const c of out) kept.push(c as Buffer);
    t.equal(sha(Buffer.concat(kept)), sha(target), `decode ${i}`);
  }
  const bad = await fsp.readFile(path.join(dir, 'delta'));
  bad.fill(0x5a, Math.floor(bad.length / 2));
  await fsp.writeFile(path.join(dir, 'bad'), bad);
  const failing = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'bad'), undefined, undefined, true);
  await t.rejects(
    (async () => {
      for await (const c of failing) void c;
    })(),
    /xdelta3 decode failed/,
    'a corrupt delta fails the stream, never a short success',
  );
  const deadline = Date.now() + 5000;
  while ((codec.stats.running > 0 || (await fds()) > before) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(codec.stats.running, 0, 'no xdelta3 left');
  t.ok((await fds()) <= before, `descriptors back to ${before}`);
  t.equal(codec.stats.linkFailed, 0);
});

t.test('a link is paused like a pipe: with no spool budget a slow reader holds xdelta3 back', async (t) => {
  const dir = await tempDir(t);
  const codec = codecIn(dir, { spoolBytes: 0 });
  // More than a decode may hold in memory ahead of its reader (16 MiB).
  const { ref, target } = await encodedPair(codec, dir, 40 * MIB);
  const out = codec.decode(path.join(dir, 'ref'), ref.length, path.join(dir, 'delta'), undefined, undefined, true) as DecodeAhead;
  const h = createHash('sha256');
  let peakSpool = 0;
  let peakHeld = 0;
  out.on('data', (c: Buffer) => {
    h.update(c);
    ChunkPool.recycle(c);
    peakSpool = Math.max(peakSpool, out.spooled);
    peakHeld = Math.max(peakHeld, out.held);
    out.pause();
    setTimeout(() => out.resume(), 4);
  });
  await new Promise((resolve, reject) => out.once('end', resolve).once('error', reject));
  t.equal(h.digest('hex'), sha(target), 'exact bytes');
  t.ok(out.buffersMade !== undefined, 'through a link');
  t.ok(peakHeld > 8 * MIB, `the reader fell behind (${peakHeld} bytes held at most)`);
  t.ok(peakSpool <= 2 * (256 << 10), `spooled at most ${peakSpool} bytes at a time`);
  t.ok(peakHeld <= 16 * MIB, `held at most ${peakHeld} bytes in memory`);
});

t.test('reads of a decoded copy run on recycled buffers when asked, and keep their bytes when not recycled', async (t) => {
  const dir = await tempDir(t);
  const cache = new DecodedCache(dir, 64 * MIB);
  const body = randomBytes(12 * MIB);
  const decode = async () => Readable.from([body.subarray(0, 6 * MIB), body.subarray(6 * MIB)]);
  // The decode, then reads of the file it left.
  await drain(await cache.range('x', body.length, decode, 0, body.length - 1), false);
  const plain = await drain(await cache.range('x', body.length, decode, 0, body.length - 1, true), false);
  t.equal(sha(Buffer.concat(plain.kept)), sha(body), 'chunks kept and never handed back keep their bytes');
  const recycled = await drain(await cache.range('x', body.length, decode, 0, body.length - 1, true), true);
  t.equal(recycled.kept.length, 12, 'twelve 1 MiB reads');
  t.ok(recycled.buffers <= 3, `read into ${recycled.buffers} buffers`);
});

t.test('readers that join a decode of the decoded cache live keep exact bytes while its buffers are reused', async (t) => {
  const dir = await tempDir(t);
  const cache = new DecodedCache(dir, 64 * MIB);
  const body = randomBytes(8 * MIB);
  const pool = new ChunkPool();
  let reused = 0;
  // A decode whose chunks come from a pool, trickling out so that readers
  // take them live; the cache hands each back once it is in the file, and
  // the next chunk is read into it.
  const decode = async () =>
    Readable.from(
      (async function* () {
        const seen = new Set<ArrayBufferLike>();
        for (let at = 0; at < body.length; at += 200_000) {
          const buf = pool.take();
          if (seen.has(buf.buffer)) reused++;
          seen.add(buf.buffer);
          const n = Math.min(200_000, body.length - at);
          body.copy(buf, 0, at, at + n);
          yield pool.chunk(buf, n);
          await new Promise((r) => setTimeout(r, 1));
        }
      })(),
      { objectMode: false },
    );
  // Keeping readers are checked on the chunks they kept; the recycling one on the bytes as they came.
  const keeping = async (from: number, to: number) => Buffer.concat((await drain(await cache.range('live', body.length, decode, from, to), false)).kept);
  const recycling = async () => (await drain(await cache.range('live', body.length, decode, 0, body.length - 1, true), true)).bytes;
  const [whole, recycled, part] = await Promise.all([keeping(0, body.length - 1), recycling(), keeping(3 * MIB, 5 * MIB - 1)]);
  t.ok(reused > 0, `the decode read into a buffer it had before ${reused} times`);
  t.equal(sha(whole), sha(body), 'a reader keeping every chunk: exact');
  t.equal(sha(recycled), sha(body), 'a reader recycling: exact');
  t.equal(sha(part), sha(body.subarray(3 * MIB, 5 * MIB)), 'a ranged reader: exact');
});
