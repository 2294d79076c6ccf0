import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { fmt, peakRss, request, startProxy, table, timed, writeRandom } from './util.js';

// Direct PUTs (issue goal: ≥ 0.9× a bare Node receiver doing the same
// essential work on the same body: receive, MD5 + SHA-256, write, fsync).
// Same client, same file, alternating proxy and bare, medians.

const MB = 1024 * 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The baseline: receives the body, hashes it twice, writes it to a file and fsyncs it. */
async function bareReceiver(dir: string): Promise<{ port: number; close: () => Promise<void> }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    const file = path.join(dir, `bare-${n++}`);
    const out = createWriteStream(file);
    const md5 = createHash('md5');
    const sha = createHash('sha256');
    req.on('data', (c: Buffer) => {
      md5.update(c);
      sha.update(c);
      if (!out.write(c)) {
        req.pause();
        out.once('drain', () => req.resume());
      }
    });
    req.on('end', () => {
      out.end(() => {
        void (async () => {
          const fh = await fsp.open(file, 'r+');
          await fh.sync();
          await fh.close();
          res.writeHead(200, { etag: `"${md5.digest('hex')}"`, 'x-sha256': sha.digest('hex') });
          res.end();
          await fsp.rm(file, { force: true });
        })();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

export async function directPut(work: string, sizeMb = 100, rounds = 5): Promise<void> {
  const file = path.join(work, 'dput.bin');
  await writeRandom(file, sizeMb * MB);
  const proxy = await startProxy(path.join(work, 'dput-data'));
  const bare = await bareReceiver(work);
  await request(proxy.port, 'PUT', '/dput');
  const p: number[] = [];
  const b: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      // A key no delta is tried for (not in delta_extensions).
      const [r, s] = await timed(() => request(proxy.port, 'PUT', `/dput/raw/o${i}.raw`, file));
      if (r.status !== 200) throw new Error(`proxy PUT: ${r.status}`);
      p.push(s);
      const [rb, sb] = await timed(() => request(bare.port, 'PUT', `/x${i}`, file));
      if (rb.status !== 200) throw new Error(`bare PUT: ${rb.status}`);
      b.push(sb);
    }
  } finally {
    await bare.close();
  }
  const rss = peakRss(proxy.pid);
  proxy.child.kill('SIGTERM');
  await proxy.child;
  await fsp.rm(path.join(work, 'dput-data'), { recursive: true, force: true });
  await fsp.rm(file, { force: true });
  console.log(`\nDirect PUT of ${sizeMb} MiB (a key stored as it is), ${rounds} rounds alternating with a bare Node receiver (receive, MD5 + SHA-256, write, fsync); medians.`);
  table(
    ['case', 'seconds', 'MB/s', 'speed vs bare', 'goal'],
    [
      ['proxy PUT', fmt(median(p), 2), fmt(sizeMb / median(p)), fmt(median(b) / median(p), 2), '≥ 0.90'],
      ['bare receiver', fmt(median(b), 2), fmt(sizeMb / median(b)), '-', '-'],
    ],
  );
  console.log(`proxy peak RSS: ${fmt(rss)} MB`);
}

/**
 * A delta-eligible PUT with little in common with its deltaspace's
 * reference (a fresh compressed archive, an encrypted dump): the delta is
 * not worth keeping, and the encoder is stopped once its output reaches
 * max_delta_ratio of the object (src/engine/codec.ts, OutputLimit). Beside
 * it: a direct PUT of the same file, and the full `xdelta3 -e -9` of the
 * same pair, which is what each such PUT cost before the stop.
 */
export async function unrelatedPut(work: string, sizeMb = 32): Promise<void> {
  const ref = path.join(work, 'unrel-ref.bin');
  const file = path.join(work, 'unrel.bin');
  await writeRandom(ref, sizeMb * MB);
  await writeRandom(file, sizeMb * MB);
  const data = path.join(work, 'unrel-data');
  const proxy = await startProxy(data);
  await request(proxy.port, 'PUT', '/unrel');
  if ((await request(proxy.port, 'PUT', '/unrel/rel/v1.zip', ref)).status !== 200) throw new Error('seed PUT failed');
  const [r, delta] = await timed(() => request(proxy.port, 'PUT', '/unrel/rel/v2.zip', file));
  const stored = (await fsp.readdir(path.join(data, 'unrel', 'rel'))).filter((n) => n.startsWith('v2.zip.') && n.endsWith('.bin'));
  if (r.status !== 200 || !stored.every((n) => n.endsWith('.direct.bin'))) throw new Error(`unrelated PUT: ${r.status}, stored as ${stored.join(', ')}`);
  const [, direct] = await timed(() => request(proxy.port, 'PUT', '/unrel/raw/v2.raw', file));
  proxy.child.kill('SIGTERM');
  await proxy.child;
  const out = path.join(work, 'unrel.vcd');
  const [, full] = await timed(() => execa('xdelta3', ['-e', '-A', '-f', '-D', '-B', String(64 * MB), '-9', '-s', ref, file, out]));
  await Promise.all([ref, file, out, data].map((p) => fsp.rm(p, { recursive: true, force: true })));
  console.log(`\nA delta-eligible PUT of ${sizeMb} MiB unrelated to the reference (random bytes): the encode stops once the delta reaches max_delta_ratio (0.5) and the object is stored direct.`);
  table(
    ['case', 'seconds', 'vs direct PUT'],
    [
      ['delta-eligible PUT (stored direct)', fmt(delta, 2), fmt(delta / direct, 1) + '×'],
      ['direct PUT of the same file', fmt(direct, 2), '-'],
      ['full xdelta3 -e -9 of the pair (the cost without the stop)', fmt(full, 2), fmt(full / direct, 1) + '×'],
    ],
  );
}
