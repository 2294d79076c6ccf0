import aws4 from 'aws4';
import { execa, type ResultPromise } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY } from '../src/config/config.js';

// Helpers shared by the bench's cases: the proxy in its own process, signed
// requests, timing and tables.

export const creds = { accessKeyId: DEV_ACCESS_KEY_ID, secretAccessKey: DEV_SECRET_ACCESS_KEY };
export const fmt = (n: number, d = 1) => n.toFixed(d);

export interface Proxy {
  port: number;
  pid: number;
  child: ResultPromise;
}

/** The proxy as its own process on a free port; `nodeArgs` go to node itself (e.g. --cpu-prof). */
export async function startProxy(dataDir: string, args: string[] = [], env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Proxy> {
  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.js');
  const child = execa(process.execPath, [...nodeArgs, main, '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...args], {
    env: { DELTAGLIDER_PROXY_LOG_LEVEL: 'info', ...env },
    reject: false,
    all: true,
    // Its log is read below (a line per request), never kept whole: a small
    // object run logs a few hundred MB, past execa's buffer limit.
    buffer: false,
  });
  let out = '';
  let listening = false;
  const port = await new Promise<number>((resolve, reject) => {
    child.all!.on('data', (c: Buffer) => {
      // Once it listens, the rest is only drained: scanning every request's
      // line would take CPU from the load generator and the proxy.
      if (listening) return;
      if (out.length < 100_000) out += c.toString();
      const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        listening = true;
        resolve(Number(m[1]));
      }
    });
    void child.then(() => reject(new Error(`proxy exited: ${out}`)));
  });
  return { port, pid: child.pid!, child };
}

/** Peak resident set size of a process, MB (Linux /proc). */
export function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * A signed request; `text` keeps the first 1 MB of the response body
 * (listings). With `discard`, the body is only counted, as a load client
 * (`curl -o /dev/null`, wrk) does: `sha` is then empty.
 */
export function request(port: number, method: string, p: string, file?: string, discard = false): Promise<{ status: number; sha: string; bytes: number; text: string; ttfb: number }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const go = async () => {
      const headers: Record<string, string> = { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
      if (file) headers['content-length'] = String((await fsp.stat(file)).size);
      const signed = aws4.sign({ host: `127.0.0.1:${port}`, method, path: p, headers, service: 's3', region: 'us-east-1' }, creds);
      const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: signed.headers as Record<string, string> }, (res) => {
        const h = createHash('sha256');
        let bytes = 0;
        let ttfb = 0;
        const kept: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          if (bytes === 0) ttfb = Number(process.hrtime.bigint() - t0) / 1e9;
          if (!discard) {
            h.update(c);
            if (bytes < 1 << 20) kept.push(c);
          }
          bytes += c.length;
        });
        res.on('end', () => resolve({ status: res.statusCode!, sha: discard ? '' : h.digest('hex'), bytes, text: Buffer.concat(kept).toString(), ttfb }));
        res.on('error', reject);
      });
      req.on('error', reject);
      if (file) createReadStream(file).pipe(req);
      else req.end();
    };
    go().catch(reject);
  });
}

/** Bytes of the files below `dir` (0 if it is missing), backend temp files (`%%`) aside. */
export async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += await dirBytes(p);
    else if (!e.name.startsWith('%%')) n += (await fsp.stat(p)).size;
  }
  return n;
}

export async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const r = await fn();
  return [r, Number(process.hrtime.bigint() - t0) / 1e9];
}

export function table(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padStart(widths[i])).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}


/** `size` random bytes into `file`, 16 MiB at a time. */
export async function writeRandom(file: string, size: number): Promise<void> {
  const out = createWriteStream(file);
  for (let left = size; left > 0; left -= 16 << 20) {
    if (!out.write(randomBytes(Math.min(16 << 20, left)))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/** SHA-256 of a file, hex. */
export async function fileSha(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

/** A TCP port free on the loopback interface right now (for servers that cannot listen on port 0 and report it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
