import * as fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { build } from '../../src/app.js';
import { defaultConfig, type Config } from '../../src/config/config.js';

export interface Proxy {
  url: string;
  port: number;
  app: FastifyInstance;
  dataDir: string;
  config: Config;
}

interface Teardownable {
  teardown(fn: () => unknown): void;
}

export async function tempDir(t: Teardownable, tag = 'dgp-test-'): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), tag));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A fresh proxy on a free loopback port with its own data directory. */
export async function startProxy(t: Teardownable, over: Partial<Config> = {}): Promise<Proxy> {
  const dataDir = over.dataDir ?? (await tempDir(t));
  const config = defaultConfig({ logLevel: 'silent', ...over, dataDir });
  const app = await build(config);
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => app.close());
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return { url: `http://127.0.0.1:${port}`, port, app, dataDir, config };
}

/** Every file under a directory, relative paths, with sizes. */
export async function listFiles(dir: string): Promise<{ rel: string; size: number }[]> {
  const out: { rel: string; size: number }[] = [];
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push({ rel: path.relative(dir, p), size: (await fsp.stat(p)).size });
    }
  };
  await walk(dir);
  return out.sort((a, b) => (a.rel < b.rel ? -1 : 1));
}

/** Bytes the backend holds for a bucket (data blobs and sidecars). */
export async function storedBytes(p: Proxy, bucket: string): Promise<number> {
  const files = await listFiles(path.join(p.dataDir, bucket));
  return files.filter((f) => !path.basename(f.rel).startsWith('%%')).reduce((n, f) => n + f.size, 0);
}
