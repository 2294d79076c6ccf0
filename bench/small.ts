import aws4 from 'aws4';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { creds, fmt, peakRss, request, startProxy, table } from './util.js';

// Small objects under load: GET of 4 KiB and 256 KiB objects through
// the proxy (direct and delta), beside a bare Node HTTP server serving the
// same file, both driven by wrk (a JS load generator would be the
// bottleneck). Requests are presigned URLs, so wrk needs no signing.

const SECONDS = Number(process.env.BENCH_SMALL_SECONDS ?? 3);
/** Rounds of bare, direct and delta, one after the other. */
const ROUNDS = Number(process.env.BENCH_SMALL_ROUNDS ?? 3);

function presign(port: number, method: string, p: string): string {
  const s = aws4.sign({ host: `127.0.0.1:${port}`, method, path: `${p}?X-Amz-Expires=3600`, service: 's3', region: 'us-east-1', signQuery: true }, creds);
  return `http://127.0.0.1:${port}${s.path}`;
}

/** Requests per second and p50 latency from wrk. */
async function wrk(url: string, method: string, dir: string): Promise<{ rps: number; p50: string }> {
  const script = path.join(dir, `${method}.lua`);
  await fsp.writeFile(script, `wrk.method = "${method}"\n`);
  const r = await execa('wrk', ['-t', '2', '-c', '16', '-d', `${SECONDS}s`, '--latency', '-s', script, url], { reject: false });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const p50 = /^\s*50%\s+(\S+)/m.exec(r.stdout)?.[1] ?? '?';
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(r.stdout);
  if (non2xx) throw new Error(`wrk: ${non2xx[1]} error responses from ${url}`);
  return { rps, p50 };
}

/**
 * HEAD load from ab (apache2-utils): wrk cannot drive HEAD (it waits for the
 * body a HEAD response's Content-Length announces). ab is a C client too,
 * single-threaded, good for ~25k HEAD/s here: well above either server.
 */
async function ab(url: string): Promise<{ rps: number; p50: string } | null> {
  const r = await execa('ab', ['-i', '-k', '-c', '16', '-t', String(SECONDS), '-q', url], { reject: false });
  if (r.failed && !/Requests per second/.test(r.stdout)) return null;
  const failed = Number(/Failed requests:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  const non2xx = /Non-2xx responses:\s+(\d+)/.exec(r.stdout);
  if (failed || non2xx) throw new Error(`ab: ${failed} failed, ${non2xx?.[1] ?? 0} error responses from ${url}`);
  return { rps: Number(/Requests per second:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN), p50: `${/^\s*50%\s+(\S+)/m.exec(r.stdout)?.[1] ?? '?'}ms` };
}

/** The baseline: a bare Node server streaming one file per GET, and answering a HEAD from a stat of it, as a static file server does. */
async function bareServer(file: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    void fsp.stat(file).then((st) => {
      res.writeHead(200, { 'content-length': String(st.size), 'content-type': 'application/octet-stream' });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file).pipe(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/f`, close: () => new Promise((r) => server.close(() => r())) };
}

export async function small(work: string): Promise<void> {
  const which = await execa('wrk', ['--version'], { reject: false });
  if (which.failed && !/wrk/.test(which.stdout + which.stderr)) {
    console.log('\nSmall objects: skipped (wrk is not installed: apt-get install -y wrk)');
    return;
  }
  const data = path.join(work, 'small-data');
  const proxy = await startProxy(data);
  await request(proxy.port, 'PUT', '/small');
  const rows: string[][] = [];
  for (const size of [4 * 1024, 256 * 1024]) {
    const base = randomBytes(size);
    const file = path.join(work, `small-${size}`);
    await fsp.writeFile(file, base);
    // Delta objects: a first version seeds the deltaspace's reference, the
    // second (1 % changed) is stored against it when the delta is worth it.
    const v2 = Buffer.from(base);
    randomBytes(Math.max(1, size / 100)).copy(v2, size >> 1);
    const file2 = path.join(work, `small-${size}-v2`);
    await fsp.writeFile(file2, v2);
    await request(proxy.port, 'PUT', `/small/d${size}/v1.zip`, file);
    await request(proxy.port, 'PUT', `/small/d${size}/v2.zip`, file2);
    await request(proxy.port, 'PUT', `/small/f${size}.txt`, file2);
    const head = await fetch(presign(proxy.port, 'HEAD', `/small/d${size}/v2.zip`), { method: 'HEAD' });
    const storedAs = head.headers.get('x-deltaglider-stored-as') ?? '?';
    const bare = await bareServer(file2);
    try {
      for (const method of ['GET', 'HEAD']) {
        const load = (url: string) => (method === 'GET' ? wrk(url, method, work) : ab(url));
        // Rounds of bare, direct and delta back to back: the machine's speed
        // drifts over a run (other tenants of the host), so each ratio is of
        // figures taken seconds apart; the table gives medians over rounds.
        const rounds: { bare: number; direct: { rps: number; p50: string }; delta: { rps: number; p50: string } }[] = [];
        for (let r = 0; r < ROUNDS; r++) {
          const b = await load(bare.url);
          if (!b) break;
          // A short warm-up first: the first requests fill the small-object cache and warm the JIT.
          for (const k of [`/small/f${size}.txt`, `/small/d${size}/v2.zip`]) await execa('wrk', ['-t', '1', '-c', '4', '-d', '1s', presign(proxy.port, 'GET', k)], { reject: false });
          const direct = (await load(presign(proxy.port, method, `/small/f${size}.txt`)))!;
          const delta = (await load(presign(proxy.port, method, `/small/d${size}/v2.zip`)))!;
          rounds.push({ bare: b.rps, direct, delta });
        }
        if (rounds.length === 0) {
          console.log('(HEAD rows skipped: ab is not installed: apt-get install -y apache2-utils)');
          continue;
        }
        const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
        const ratios = (pick: (x: (typeof rounds)[number]) => number) => rounds.map((x) => pick(x) / x.bare);
        const span = (xs: number[]) => `${fmt(med(xs), 2)} (${fmt(Math.min(...xs), 2)}–${fmt(Math.max(...xs), 2)})`;
        const mid = (pick: (x: (typeof rounds)[number]) => { rps: number; p50: string }) => {
          const sorted = [...rounds].sort((a, b) => pick(a).rps - pick(b).rps);
          return pick(sorted[Math.floor((sorted.length - 1) / 2)]);
        };
        const kib = `${size / 1024} KiB`;
        const d = mid((x) => x.direct);
        const dl = mid((x) => x.delta);
        rows.push([`${method} ${kib}`, fmt(med(rounds.map((x) => x.bare)), 0), `${fmt(d.rps, 0)} (${d.p50})`, span(ratios((x) => x.direct.rps)), `${fmt(dl.rps, 0)} (${dl.p50}, ${storedAs})`, span(ratios((x) => x.delta.rps))]);
      }
    } finally {
      await bare.close();
    }
  }
  const rss = peakRss(proxy.pid);
  proxy.child.kill('SIGTERM');
  await proxy.child;
  console.log(`\nSmall objects: GET with wrk -t2 -c16 -d${SECONDS}s, HEAD with ab -k -c16 (wrk cannot HEAD), presigned URLs; the bare server streams the same file per GET and stats it per HEAD, with Node's http module. ${ROUNDS} rounds of bare, direct and delta back to back: medians of the rounds, ratios as median (lowest–highest) of each round's own.`);
  table(['case', 'bare req/s', 'direct req/s (p50)', 'direct/bare', 'delta-key req/s (p50, stored as)', 'delta/bare'], rows);
  console.log(`proxy peak RSS: ${fmt(rss)} MB (goal < 256 MB); goal for both ratios: >= 0.5`);
}
