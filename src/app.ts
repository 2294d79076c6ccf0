import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { cliBucketMap, type Config } from './config/config.js';
import { Engine, type EngineOptions } from './engine/engine.js';
import { parseBlobName } from './engine/keys.js';
import { buildHttp, type TlsFiles } from './http/app.js';
import { claimInstanceDir } from './lifecycle/instance-dir.js';
import type { Logger } from './log.js';
import type { Backend } from './storage/backend.js';
import { S3Backend } from './storage/s3/s3-backend.js';
import { S3PlainStore } from './storage/s3/plain-bucket.js';
import { FilesystemBackend } from './storage/filesystem/fs-backend.js';
import { VERSION } from './version.js';

/** The engine's immutable format 2 blobs (`.<id>.<role>.bin`, `reference.<id>.bin`). */
export const BLOBS_APART = { suffix: '.bin', test: (name: string) => parseBlobName(name) !== null };

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
        idleTimeoutMs: config.s3IdleTimeoutSecs * 1000,
        // Immutable blobs apart from the sidecars: a listing page pages
        // through sidecars only (docs/storage-format.md, "S3 backend layout").
        apart: BLOBS_APART,
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
    idleTimeoutMs: config.s3IdleTimeoutSecs * 1000,
  });
  return { store, buckets };
}

/**
 * Builds the proxy from a resolved configuration: backend, engine and HTTP
 * app. Nothing is read from the environment here; the caller listens. The
 * data dir lock is the caller's too (src/server.ts), so that this can also
 * serve tests and read-only tools.
 */
export async function build(config: Config, tls?: TlsFiles): Promise<FastifyInstance> {
  // Scratch space: a directory per instance (src/lifecycle/instance-dir.ts)
  // below tmp_dir, by default beside the data with the filesystem backend,
  // and the system temp dir with the S3 backend, so that the local data dir
  // stays empty.
  const inData = !config.tmpDir && !config.s3Bucket;
  const base = path.resolve(config.tmpDir || (config.s3Bucket ? os.tmpdir() : path.join(config.dataDir, '.deltaglider')));
  // Earlier versions' fixed names are removed only below the (locked) data dir.
  const inst = await claimInstanceDir(base, { legacy: inData ? ['deltaglider-spool', 'deltaglider-cache'] : [] });
  const opts = engineOptions(config, inst.dir);
  let app: FastifyInstance;
  try {
    app = buildHttp(config, (log) => new Engine(createBackend(config, log), opts, log), tls);
  } catch (err) {
    await inst.release();
    throw err;
  }
  for (const s of inst.swept) app.log.info(`removed the scratch directory of an instance that is gone: ${s}`);
  app.addHook('onClose', () => inst.release());
  try {
    await app.engine.init();
  } catch (err) {
    await app.close().catch(() => {});
    throw err;
  }
  return app;
}

/** The engine's settings from the configuration; scratch dirs under `base`. */
export function engineOptions(config: Config, base = os.tmpdir()): EngineOptions {
  return {
    tmpDir: path.join(base, 'spool'),
    cacheDir: path.join(base, 'cache'),
    cacheBytes: config.cacheSizeMb * 1024 * 1024,
    maxDeltaRatio: config.maxDeltaRatio,
    deltaExtensions: config.deltaExtensions,
    codec: {
      binary: config.xdelta3Path,
      level: config.xdelta3Level,
      secondary: config.xdelta3Secondary,
      maxWindow: config.xdelta3MaxWindowMb * 1024 * 1024,
      pool: { maxProcesses: config.codecMaxProcesses, memoryBytes: config.codecMemoryMb * 1024 * 1024, queueLength: config.codecQueueLength },
      spoolDir: path.join(base, 'spool'),
      spoolBytes: config.codecSpoolMb * 1024 * 1024,
    },
    toolVersion: `deltaglider-proxy/${VERSION}`,
    maxDeltaObjectSize: config.maxDeltaObjectSize,
    multipartMaxAgeMs: config.multipartMaxAgeHours * 3600_000,
    writeFormat: config.storageFormat as 1 | 2,
    blobGraceMs: config.blobGraceSeconds * 1000,
    orphanAgeMs: config.gcOrphanAgeMinutes * 60_000,
    sweepIntervalMs: config.gcSweepHours * 3600_000,
    decodedCacheBytes: config.decodedCacheMb * 1024 * 1024,
    compaction: { mode: config.compaction, backlog: config.compactionBacklog },
    gzip: { enabled: config.gzipForm },
    cliLayout: cliLayoutOptions(config),
  };
}
