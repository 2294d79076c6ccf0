import aws4 from 'aws4';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { creds, startProxy, type Proxy } from './util.js';

// The soak (issue 10): 200 connections on 127.0.0.1 for BENCH_SOAK_SECS
// (default 120) mixing clients that read slowly or not at all, uploads that
// stall, and normal traffic. Prints the proxy's RSS, its file descriptors
// and temp files before and after, and the latency of normal requests.
// Goals: RSS < 256 MB + codec_memory_mb (xdelta3 runs in child processes,
// counted apart), fds and temp files back to idle, p99 of normal requests
// under 1 s.
//
//   BENCH_SOAK_SECS (default 120)   duration; 0 skips the soak in npm run bench
//   BENCH_SOAK_CONNS (default 200)  connections
//   BENCH_SOAK_HOSTILE (default 0.4) share of slow readers + stalled uploads (half each), the rest normal

const SECS = Number(process.env.BENCH_SOAK_SECS ?? 120);
const CONNS = Number(process.env.BENCH_SOAK_CONNS ?? 200);
/** Share of slow readers plus stalled uploads (half each); 0 for a baseline of normal traffic alone. */
const HOSTILE = Number(process.env.BENCH_SOAK_HOSTILE ?? 0.4);
const MB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ENV = {
  DELTAGLIDER_PROXY_LOG_LEVEL: 'warn',
  DELTAGLIDER_PROXY_BODY_IDLE_TIMEOUT_SECS: '5',
  DELTAGLIDER_PROXY_SEND_IDLE_TIMEOUT_SECS: '10',
  DELTAGLIDER_PROXY_CODEC_MEMORY_MB: '1024',
  ...(process.env.SOAK_SPOOL_MB ? { DELTAGLIDER_PROXY_CODEC_SPOOL_MB: process.env.SOAK_SPOOL_MB } : {}),
};

function start(dataDir: string): Promise<Proxy> {
  const env = { ...ENV, DELTAGLIDER_PROXY_LOG_LEVEL: 'info', ...(process.env.UVT ? { UV_THREADPOOL_SIZE: process.env.UVT } : {}) };
  return startProxy(dataDir, [], env, process.env.SOAK_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.SOAK_PROF] : []);
}

function sign(port: number, method: string, p: string, headers: Record<string, string> = {}): Record<string, string> {
  return aws4.sign({ host: `127.0.0.1:${port}`, method, path: p, headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers }, service: 's3', region: 'us-east-1' }, creds).headers as Record<string, string>;
}

function head(port: number, method: string, p: string, headers: Record<string, string> = {}): string {
  const h = sign(port, method, p, headers);
  return `${method} ${p} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n${Object.entries(h).filter(([k]) => k.toLowerCase() !== 'host').map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS });

function call(port: number, method: string, p: string, body?: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers = sign(port, method, p, body ? { 'content-length': String(body.length) } : {});
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve(res.statusCode!));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

function stats(pid: number, dataDir: string) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
  let temps = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) {
        if (e.name !== 'cache') walk(path.join(d, e.name));
      } else if (e.name !== 'owner.json') temps++;
    }
  };
  walk(path.join(dataDir, '.deltaglider'));
  const ppid = (n: string) => {
    try {
      return readFileSync(`/proc/${n}/stat`, 'utf8').split(') ')[1]?.split(' ')[1];
    } catch {
      return undefined;
    }
  };
  const children = readdirSync('/proc').filter((n) => /^\d+$/.test(n) && ppid(n) === String(pid)).length;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), fds: readdirSync(`/proc/${pid}/fd`).length, temps, children };
}

export async function soak(work: string): Promise<void> {
  const dataDir = path.join(work, 'soak-data');
  const proxy = await start(dataDir);
  const { port, pid } = proxy;
  console.log(`\nsoak: ${CONNS} connections for ${SECS} s on 127.0.0.1 (${Object.entries(ENV).map(([k, v]) => `${k.replace('DELTAGLIDER_PROXY_', '').toLowerCase()}=${v}`).join(', ')})`);
  try {
    await call(port, 'PUT', '/soak');
    const ref = randomBytes(2 * MB);
    for (let i = 0; i < 4; i++) {
      const v = Buffer.from(ref);
      v.write(`version ${i}`, 1000 + i * 50_000);
      await call(port, 'PUT', `/soak/rel/app-${i}.zip`, v);
    }
    const small = randomBytes(64 * 1024);
    await call(port, 'PUT', '/soak/small.bin', small);
    await sleep(1000);
    const before = stats(pid, dataDir);

    const end = Date.now() + SECS * 1000;
    const lat: number[] = [];
    const byOp = new Map<string, number[]>();
    const statuses = new Map<string, number>();
    const count = (k: string) => statuses.set(k, (statuses.get(k) ?? 0) + 1);
    let peakRss = before.rss;
    let peakChildren = 0;
    const sampler = setInterval(() => {
      const s = stats(pid, dataDir);
      peakRss = Math.max(peakRss, s.rss);
      peakChildren = Math.max(peakChildren, s.children);
    }, 500);
    const nSlow = Math.round(CONNS * HOSTILE / 2);
    const nStall = Math.round(CONNS * HOSTILE / 2);
    const workers: Promise<void>[] = [];

    // Slow readers: half trickle (a burst every 2 s), half read nothing.
    for (let i = 0; i < nSlow; i++) {
      workers.push((async () => {
        while (Date.now() < end) {
          const s = net.connect(port, '127.0.0.1');
          s.on('error', () => {});
          s.pause();
          const closed = new Promise<void>((r) => s.once('close', () => r()));
          s.write(head(port, 'GET', `/soak/rel/app-${i % 4}.zip`));
          const trickle = i % 2 === 0 ? setInterval(() => s.read(16 * 1024), 2000) : undefined;
          await Promise.race([closed, sleep(Math.max(0, end - Date.now()))]);
          clearInterval(trickle);
          s.destroy();
          count(trickle ? 'slow reader ended' : 'non-reader ended');
        }
      })());
    }
    // Stalled uploads (delta keys: an encoder may start for them): part of a body, then nothing.
    for (let i = 0; i < nStall; i++) {
      workers.push((async () => {
        while (Date.now() < end) {
          const s = net.connect(port, '127.0.0.1');
          s.on('error', () => {});
          let got = '';
          s.on('data', (c: Buffer) => (got += c.toString()));
          const closed = new Promise<void>((r) => s.once('close', () => r()));
          s.write(head(port, 'PUT', `/soak/rel/stalled-${i}.zip`, { 'content-length': String(2 * MB) }));
          s.write(ref.subarray(0, 64 * 1024));
          await Promise.race([closed, sleep(Math.max(0, end - Date.now()))]);
          s.destroy();
          count(/<Code>RequestTimeout<\/Code>/.test(got) ? 'stalled upload: 400 RequestTimeout' : 'stalled upload: other end');
        }
      })());
    }
    // Normal traffic, 200 ms think time.
    for (let i = 0; i < CONNS - nSlow - nStall; i++) {
      workers.push((async () => {
        let n = 0;
        while (Date.now() < end) {
          const r = (i + n++) % 20;
          const t0 = performance.now();
          let status: number | string;
          const op = r < 10 ? 'GET 64 KiB direct' : r < 14 ? 'HEAD' : r < 17 ? 'PUT 16 KiB' : 'GET 2 MiB delta';
          try {
            if (r < 10) status = await call(port, 'GET', '/soak/small.bin');
            else if (r < 14) status = await call(port, 'HEAD', '/soak/small.bin');
            else if (r < 17) status = await call(port, 'PUT', `/soak/up/${i}-${n}.txt`, small.subarray(0, 16 * 1024));
            else status = await call(port, 'GET', `/soak/rel/app-${n % 4}.zip`);
          } catch (err) {
            status = (err as Error).message;
          }
          const ms = performance.now() - t0;
          lat.push(ms);
          if (!byOp.has(op)) byOp.set(op, []);
          byOp.get(op)!.push(ms);
          count(`normal: ${status}`);
          await sleep(200);
        }
      })());
    }
    await Promise.all(workers);
    clearInterval(sampler);
    agent.destroy();
    // Settle: the proxy lets go of everything once its clients are gone.
    let after = stats(pid, dataDir);
    for (let i = 0; i < 60 && (after.fds > before.fds || after.temps > before.temps || after.children > 0); i++) {
      await sleep(500);
      after = stats(pid, dataDir);
    }
    const pct = (l: number[], p: number) => {
      l.sort((a, b) => a - b);
      return (l[Math.min(l.length - 1, Math.floor((p / 100) * l.length))] ?? NaN).toFixed(0);
    };
    console.log(`normal requests: ${lat.length}, p50 ${pct(lat, 50)} ms, p99 ${pct(lat, 99)} ms, max ${pct(lat, 100)} ms (goal: p99 < 1000 ms)`);
    for (const [op, l] of [...byOp].sort()) console.log(`  ${op}: ${l.length}, p50 ${pct(l, 50)} ms, p99 ${pct(l, 99)} ms`);
    for (const [k, v] of [...statuses].sort()) console.log(`  ${k}: ${v}`);
    console.log(`proxy RSS: idle ${before.rss.toFixed(0)} MB, peak ${peakRss.toFixed(0)} MB, after ${after.rss.toFixed(0)} MB (goal < 256 MB + codec_memory_mb 1024; xdelta3 children counted apart, at most ${peakChildren} at once)`);
    console.log(`file descriptors: before ${before.fds}, after ${after.fds}; temp files: before ${before.temps}, after ${after.temps}; xdelta3 processes after: ${after.children}`);
  } finally {
    proxy.child.kill('SIGTERM');
    await proxy.child;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'dgp-soak-'));
  try {
    await soak(work);
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}
