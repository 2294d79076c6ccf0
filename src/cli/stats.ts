import { ConfigError, loadConfig } from '../config/config.js';
import { createBackend } from '../app.js';
import { isBucketName } from '../engine/keys.js';
import { saving, scanUsage, type DeltaspaceUsage } from '../engine/usage.js';
import { silentLogger } from '../log.js';

// `deltaglider-proxy stats [s3://bucket[/prefix]] [--json] [options]`: what
// each bucket and deltaspace really uses, read straight from the backend with
// the server's configuration (file, env, flags); no server needed.

export const STATS_HELP = `Usage: deltaglider-proxy stats [s3://BUCKET[/PREFIX]] [--json] [options]

Prints objects, logical bytes (as uploaded), stored bytes (what the backend
holds: data, deltas, references, sidecars) and the saving, per bucket and per
deltaspace, reading the backend directly with the server's configuration.
Options are the server's (-c, -d, ...); --json prints one JSON document.
`;

export interface StatsArgs {
  bucket?: string;
  prefix: string;
  json: boolean;
  rest: string[];
}

export function parseStatsArgs(argv: string[]): StatsArgs {
  const out: StatsArgs = { prefix: '', json: false, rest: [] };
  for (const a of argv) {
    if (a === '--json') out.json = true;
    else if (a.startsWith('s3://')) {
      const path = a.slice(5);
      const slash = path.indexOf('/');
      out.bucket = slash < 0 ? path : path.slice(0, slash);
      out.prefix = slash < 0 ? '' : path.slice(slash + 1);
      if (!isBucketName(out.bucket)) throw new ConfigError(`not a bucket name: ${out.bucket}`);
    } else out.rest.push(a);
  }
  return out;
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
export function human(n: number): string {
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

const pct = (s: number) => `${(s * 100).toFixed(1)} %`;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')).join('\n') + '\n';
}

export async function runStats(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    out(STATS_HELP);
    return 0;
  }
  const args = parseStatsArgs(argv);
  const action = loadConfig({ argv: args.rest, env: process.env });
  if (action.action !== 'run') throw new ConfigError('stats takes no --help/--version here');
  // No init(): the backend may be in use by a running server, whose temp
  // files the filesystem backend's start-up clean-up would remove.
  const backend = createBackend(action.config, silentLogger);
  try {
    const buckets = args.bucket ? [args.bucket] : (await backend.listBuckets()).map((b) => b.name);
    const rows: DeltaspaceUsage[] = [];
    const perBucket: { bucket: string; objects: number; logical_bytes: number; stored_bytes: number; saving: number }[] = [];
    for (const b of buckets) {
      if (args.bucket && !(await backend.headBucket(b))) throw new ConfigError(`no such bucket: ${b}`);
      const r = await scanUsage(backend, b, args.prefix);
      perBucket.push({ bucket: b, objects: r.objects, logical_bytes: r.logical_bytes, stored_bytes: r.stored_bytes, saving: r.saving });
      rows.push(...r.deltaspaces);
    }
    const objects = perBucket.reduce((n, b) => n + b.objects, 0);
    const logical = perBucket.reduce((n, b) => n + b.logical_bytes, 0);
    const stored = perBucket.reduce((n, b) => n + b.stored_bytes, 0);
    if (args.json) {
      out(JSON.stringify({ objects, logical_bytes: logical, stored_bytes: stored, saving: saving(logical, stored), buckets: perBucket, deltaspaces: rows }, null, 2) + '\n');
      return 0;
    }
    const lines: string[][] = [['', 'objects', 'deltas', 'direct', 'logical', 'stored', 'reference', 'saving']];
    for (const b of perBucket) {
      lines.push([`s3://${b.bucket}${args.prefix ? `/${args.prefix}` : ''}`, String(b.objects), '', '', human(b.logical_bytes), human(b.stored_bytes), '', pct(b.saving)]);
      for (const r of rows.filter((x) => x.bucket === b.bucket)) {
        lines.push([`  ${r.deltaspace === '' ? '(top)' : `${r.deltaspace}/`}`, String(r.objects), String(r.deltas), String(r.direct), human(r.logical_bytes), human(r.stored_bytes), human(r.reference_bytes), pct(r.saving)]);
      }
    }
    if (perBucket.length === 0) {
      out('no buckets\n');
      return 0;
    }
    if (perBucket.length > 1) lines.push(['total', String(objects), '', '', human(logical), human(stored), '', pct(saving(logical, stored))]);
    out(table(lines));
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    process.stderr.write(`deltaglider-proxy stats: cannot read the backend: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await backend.close();
  }
}
