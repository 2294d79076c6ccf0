import * as fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createBackend, engineOptions } from '../app.js';
import { ConfigError, type Config } from '../config/config.js';
import { Engine } from '../engine/engine.js';
import { scrub, type ScrubReport } from '../engine/scrub.js';
import { silentLogger } from '../log.js';

// `deltaglider-proxy scrub [s3://bucket[/prefix]] [--json]`: verifies every
// object and reference against its digests, reading the backend directly.
// Read-only: it takes no lock and writes nothing to the backend, so it can
// run beside a serving instance. Exit code 0: all intact; 1: damage found.

export function parseTarget(arg: string | undefined): { bucket?: string; prefix?: string } {
  if (!arg) return {};
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(arg);
  if (!m) throw new ConfigError(`expected s3://bucket[/prefix], got ${arg}`);
  return { bucket: m[1], prefix: m[2] || undefined };
}

export async function runScrub(config: Config, target: string | undefined, json: boolean, out: { write(s: string): unknown } = process.stdout, err: { write(s: string): unknown } = process.stderr): Promise<number> {
  const sel = parseTarget(target);
  // Scratch space of its own: never a serving instance's spool or cache.
  const scratch = await fsp.mkdtemp(path.join(os.tmpdir(), 'deltaglider-scrub-'));
  const backend = createBackend(config, silentLogger);
  const engine = new Engine(backend, engineOptions(config, scratch), silentLogger);
  for (const d of ['cache', 'spool']) await fsp.mkdir(path.join(scratch, d), { recursive: true });
  let last = 0;
  let report: ScrubReport;
  try {
    if (backend.kind === 's3') await backend.init();
    report = await scrub({ backend, store: engine }, sel, (p) => {
      if (Date.now() - last < 2000) return;
      last = Date.now();
      err.write(`scrub: ${p.objects} objects, ${(p.bytes / 1e6).toFixed(1)} MB checked, ${p.damaged} damaged\n`);
    });
  } finally {
    await backend.close();
    await fsp.rm(scratch, { recursive: true, force: true });
  }
  const badRefs = report.references.filter((r) => !r.ok);
  if (json) {
    out.write(`${JSON.stringify({ ...report, ok: report.damaged.length === 0 && badRefs.length === 0 }, null, 1)}\n`);
  } else {
    for (const d of report.damaged) out.write(`DAMAGED ${d.bucket}/${d.key}: ${d.reason}\n`);
    for (const r of badRefs) {
      out.write(`DAMAGED reference ${r.bucket}/${r.blob}: ${r.reason}\n`);
      for (const k of r.dependents) out.write(`  needed by ${r.bucket}/${k}\n`);
    }
    out.write(`scrub: ${report.objects} objects (${(report.bytes / 1e6).toFixed(1)} MB) and ${report.references.length} references checked; ${report.damaged.length} damaged objects, ${badRefs.length} damaged references\n`);
  }
  return report.damaged.length === 0 && badRefs.length === 0 ? 0 : 1;
}
