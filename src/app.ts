import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config/config.js';
import { Engine } from './engine/engine.js';
import { buildHttp } from './http/app.js';
import type { Backend } from './storage/backend.js';
import { FilesystemBackend } from './storage/filesystem/fs-backend.js';
import { VERSION } from './version.js';

export function createBackend(config: Config): Backend {
  return new FilesystemBackend(config.dataDir);
}

/**
 * Builds the proxy from a resolved configuration: backend, engine and HTTP
 * app. Nothing is read from the environment here; the caller listens.
 */
export async function build(config: Config): Promise<FastifyInstance> {
  const backend = createBackend(config);
  const tmpDir = path.resolve(config.tmpDir || path.join(os.tmpdir(), 'deltaglider-proxy'));
  const opts = {
    tmpDir,
    cacheDir: path.join(path.dirname(tmpDir), 'cache'),
    cacheBytes: config.cacheSizeMb * 1024 * 1024,
    maxDeltaRatio: config.maxDeltaRatio,
    deltaExtensions: config.deltaExtensions,
    codec: {
      binary: config.xdelta3Path,
      level: config.xdelta3Level,
      secondary: config.xdelta3Secondary,
      maxWindow: config.xdelta3MaxWindowMb * 1024 * 1024,
    },
    toolVersion: `deltaglider-proxy/${VERSION}`,
  };
  const app = buildHttp(config, (log) => new Engine(backend, opts, log));
  await app.engine.init();
  return app;
}
