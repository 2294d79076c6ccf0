import * as fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createBackend, engineOptions } from '../app.js';
import { cliBucketMap, ConfigError, type Config } from '../config/config.js';
import { migrateBucket, type MigrateReport } from '../engine/cli-layout/migrate.js';
import { Engine } from '../engine/engine.js';
import { silentLogger } from '../log.js';
import { parseTarget } from './scrub.js';

// `deltaglider-proxy migrate s3://cli-bucket[/prefix] [s3://proxy-bucket] [--json]`:
// copies a bucket in the DeltaGlider CLI's layout (backend.cli_buckets) into
// a bucket of the native format, verifying every object (../engine/cli-layout/migrate.ts).
// Without a destination it migrates in place: into the native bucket of the
// same name, which clients see once the name leaves backend.cli_buckets.
// Exit code 0: every object is at the destination, verified; 1 otherwise.

type Sink = { write(s: string): unknown };

export async function runMigrate(config: Config, targets: string[], json: boolean, out: Sink = process.stdout, err: Sink = process.stderr): Promise<number> {
  const src = parseTarget(targets[0]);
  const dst = targets[1] ? parseTarget(targets[1]) : { bucket: src.bucket };
  if (!src.bucket || targets.length > 2) throw new ConfigError('usage: deltaglider-proxy migrate s3://cli-bucket[/prefix] [s3://proxy-bucket]');
  if (dst.prefix) throw new ConfigError('the destination is a whole bucket: s3://proxy-bucket');
  const map = cliBucketMap(config);
  if (!map.has(src.bucket)) throw new ConfigError(`s3://${src.bucket} is not in backend.cli_buckets`);
  if (dst.bucket !== src.bucket && map.has(dst.bucket!)) throw new ConfigError(`s3://${dst.bucket} is in backend.cli_buckets; the destination must be a bucket in the native format`);
  const scratch = await fsp.mkdtemp(path.join(os.tmpdir(), 'deltaglider-migrate-'));
  // Everything under the scratch dir: spool, caches and the codec's decode spool.
  const opts = engineOptions(config, scratch);
  for (const d of [opts.tmpDir, path.join(opts.cacheDir, 'cli-layout')]) await fsp.mkdir(d, { recursive: true });
  const from = new Engine(createBackend(config, silentLogger), opts, silentLogger);
  // The destination engine has no CLI mapping: it always writes the native format.
  const to = new Engine(createBackend(config, silentLogger), { ...opts, cliLayout: undefined }, silentLogger);
  let last = 0;
  let report: MigrateReport;
  const started = Date.now();
  try {
    report = await migrateBucket({ from, srcBucket: src.bucket, prefix: src.prefix ?? '', to, dstBucket: dst.bucket! }, (p) => {
      if (Date.now() - last < 2000) return;
      last = Date.now();
      err.write(`migrate: ${p.listed} objects seen, ${p.copied} copied (${(p.bytes / 1e6).toFixed(1)} MB), ${p.skipped} already there, ${p.failed} failed\n`);
    });
  } finally {
    await from.close();
    await to.close();
    await fsp.rm(scratch, { recursive: true, force: true });
  }
  const ok = report.failed === 0;
  if (json) out.write(`${JSON.stringify({ ...report, ok, seconds: (Date.now() - started) / 1000 }, null, 1)}\n`);
  else {
    for (const f of report.failures) out.write(`FAILED ${src.bucket}/${f.key}: ${f.reason}\n`);
    out.write(`migrate: s3://${src.bucket} -> s3://${dst.bucket}: ${report.copied} copied and verified (${(report.bytes / 1e6).toFixed(1)} MB), ${report.skipped} already there, ${report.failed} failed\n`);
  }
  return ok ? 0 : 1;
}
