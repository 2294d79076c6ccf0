import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { cliBucketMap, type Config } from './config/config.js';
import { Engine, type EngineOptions } from './engine/engine.js';
import { buildHttp } from './http/app.js';
import * as fsp from 'node:fs/promises';
import type { Logger } from './log.js';
import type { Backend } from './storage/backend.js';
import { S3Backend } from './storage/s3/s3-backend.js';
import { S3PlainStore } from './storage/s3/plain-bucket.js';
import { FilesystemBackend } from './storage/filesystem/fs-backend.js';
import { VERSION } from './version.js';

export function createBackend(config: Config, log: Logger): Backend {
  if (config.s3Bucket) {
    return new S3Backend(
      {
        bucket: config.s3Bucket,
        prefix: config.s3Prefix,
        endpoint: config.s3Endpoint || undefined,
        region: config.s3Region,
        forcePathStyle: config.s3ForcePathStyle,
        accessKeyId: config.s3AccessKeyId || undefined,
        secretAccessKey: config.s3SecretAccessKey || undefined,
      },
      log,
    );
  }
  return new FilesystemBackend(config.dataDir);
}

/** Buckets in the DeltaGlider CLI's layout (backend.cli_buckets), on the S3 backend's endpoint. */
export function cliLayoutOptions(config: Config): EngineOptions['cliLayout'] {
  const buckets = cliBucketMap(config);
  if (buckets.size === 0) return undefined;
  const store = new S3PlainStore({
    endpoint: config.s3Endpoint || undefined,
    region: config.s3Region,
    forcePathStyle: config.s3ForcePathStyle,
    accessKeyId: config.s3AccessKeyId || undefined,
    secretAccessKey: config.s3SecretAccessKey || undefined,
  });
  return { store, buckets };
}

/**
 * Builds the proxy from a resolved configuration: backend, engine and HTTP
 * app. Nothing is read from the environment here; the caller listens.
 */
export async function build(config: Config): Promise<FastifyInstance> {
  // Scratch space: beside the data with the filesystem backend (same
  // filesystem, so references are hard links); with the S3 backend a private
  // temp directory, so that the local data dir stays empty and instances on
  // one host never share (and wipe) each other's.
  // The proxy only ever empties the two subdirectories it names itself, so
  // tmp_dir may safely point at a shared directory such as /tmp.
  const ownTmp = !config.tmpDir && !!config.s3Bucket;
  const base = path.resolve(config.tmpDir || (ownTmp ? await fsp.mkdtemp(path.join(os.tmpdir(), 'deltaglider-proxy-')) : path.join(config.dataDir, '.deltaglider')));
  const opts = engineOptions(config, base);
  const app = buildHttp(config, (log) => new Engine(createBackend(config, log), opts, log));
  if (ownTmp) app.addHook('onClose', () => fsp.rm(base, { recursive: true, force: true }));
  await app.engine.init();
  return app;
}

/** The engine's settings from the configuration; scratch dirs under `base`. */
export function engineOptions(config: Config, base = os.tmpdir()): EngineOptions {
  return {
    tmpDir: path.join(base, 'deltaglider-spool'),
    cacheDir: path.join(base, 'deltaglider-cache'),
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
    maxDeltaObjectSize: config.maxDeltaObjectSize,
    multipartMaxAgeMs: config.multipartMaxAgeHours * 3600_000,
    writeFormat: config.storageFormat as 1 | 2,
    blobGraceMs: config.blobGraceSeconds * 1000,
    orphanAgeMs: config.gcOrphanAgeMinutes * 60_000,
    sweepIntervalMs: config.gcSweepHours * 3600_000,
    cliLayout: cliLayoutOptions(config),
  };
}
