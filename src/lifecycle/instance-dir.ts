import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, heartbeat, judge, ownDirectory, parseRecord, selfRecord } from './holder.js';

// Scratch space per process: every instance works in its own directory
// below the configured base (tmp_dir), named after it and holding its record
// with a heartbeat (./holder.ts). At start-up an instance removes only the
// directories of instances that are surely gone, so several instances may
// share one tmp_dir (or /tmp) without wiping each other's files.

const PREFIX = 'deltaglider-proxy-';
const OWNER = 'owner.json';
/** Names this module creates; older proxies' mkdtemp names never match. */
const NAME = /^deltaglider-proxy-.+-\d+-[0-9a-f]{12}$/;

export interface InstanceDir {
  dir: string;
  /** What start-up removed, for the log. */
  swept: string[];
  /** Removes the directory and everything in it. */
  release(): Promise<void>;
}

export async function claimInstanceDir(base: string, opts: { legacy?: string[] } = {}): Promise<InstanceDir> {
  const me = selfRecord();
  await fsp.mkdir(base, { recursive: true });
  const dir = path.join(base, `${PREFIX}${me.host.replace(/[^A-Za-z0-9.-]/g, '_')}-${me.pid}-${me.instance}`);
  await fsp.mkdir(dir);
  const owner = path.join(dir, OWNER);
  await fsp.writeFile(owner, `${JSON.stringify(me)}\n`);
  const stop = heartbeat(() => [owner]);
  const swept = await sweep(base, dir);
  // Fixed names of earlier versions: only where this instance owns the base.
  for (const name of opts.legacy ?? []) {
    const p = path.join(base, name);
    if (await fsp.stat(p).catch(() => null)) {
      await fsp.rm(p, { recursive: true, force: true });
      swept.push(`${p} (earlier version)`);
    }
  }
  return {
    dir,
    swept,
    release: async () => {
      stop();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

/** Removes the directories of instances that are surely gone. */
async function sweep(base: string, mine: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await fsp.readdir(base)) {
    const dir = path.join(base, name);
    if (!NAME.test(name) || dir === mine || !(await ownDirectory(dir))) continue;
    const owner = path.join(dir, OWNER);
    const [text, st] = await Promise.all([fsp.readFile(owner, 'utf8').catch(() => ''), fsp.stat(owner).catch(() => fsp.stat(dir).catch(() => null))]);
    if (!st) continue;
    const holder = parseRecord(text);
    const v = judge(holder, st.mtimeMs);
    if (!v.sure || v.alive) continue;
    try {
      await fsp.rm(dir, { recursive: true, force: true });
      out.push(`${dir} (${holder ? describe(holder) : 'no record'}: ${v.why})`);
    } catch {
      // Another user's directory in a shared /tmp: not ours to remove.
    }
  }
  return out;
}
