import * as fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { build } from '../../src/app.js';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { startMoto } from './moto.js';

/**
 * DGP_TEST_BACKEND=s3 runs the end-to-end tests against the S3 backend on a
 * moto_server of their own (npm run test:s3, part of npm test).
 */
export const BACKEND = process.env.DGP_TEST_BACKEND === 's3' ? 's3' : 'filesystem';
let motoBuckets = 0;

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
  let backend: Partial<Config> = {};
  if (BACKEND === 's3' && !over.s3Bucket) {
    const moto = await startMoto(t);
    backend = await moto.backend(`proxy-backend-${++motoBuckets}`, 'dgp/');
  }
  const config = defaultConfig({ logLevel: 'silent', ...backend, ...over, dataDir });
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

/**
 * The blobs the backend holds for a bucket (any backend), sorted by name,
 * once the blobs replaced so far have been removed (settle).
 */
export async function blobs(p: Proxy, bucket: string, prefix = ''): Promise<{ name: string; size: number }[]> {
  await settle(p);
  const out: { name: string; size: number }[] = [];
  for await (const b of p.app.engine.backend.list(bucket, { prefix })) out.push({ name: b.name, size: b.size });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Bytes the backend holds for a bucket (data blobs and sidecars). */
export async function storedBytes(p: Proxy, bucket: string): Promise<number> {
  return (await blobs(p, bucket)).reduce((n, f) => n + f.size, 0);
}

/** Files in the local data dir outside the proxy's own scratch space. */
export async function localData(p: Proxy): Promise<string[]> {
  try {
    return (await listFiles(p.dataDir)).map((f) => f.rel).filter((f) => !f.startsWith('.deltaglider/'));
  } catch {
    return [];
  }
}

/** Blob names with their 16-hex-digit write ids replaced by ID, for comparisons. */
export const noIds = (name: string) => name.replace(/\.[0-9a-f]{16}\./, '.ID.');

/** Runs the removals of replaced blobs that the grace period still holds back. */
export async function settle(p: Proxy): Promise<void> {
  await p.app.engine.gc.drain();
}
