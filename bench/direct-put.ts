import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
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
