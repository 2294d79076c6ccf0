import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import os from 'node:os';

// Who holds something (the data dir lock, an instance directory), and
// whether that holder is still alive. Node has no flock, and a pid alone
// proves little: in containers every proxy is pid 1, and a data dir may be
// shared between hosts. So a holder writes a record (pid, host, boot id,
// start time) into a file it created exclusively, and keeps touching the
// file's mtime (a heartbeat). A holder is gone when
//   - its heartbeat is older than STALE_MS, or
//   - it ran on this host since this boot (same host name and boot id), its
//     pid is not ours, and no process has that pid any more.
// Anything else (another host, or the same pid as ours: a restarted
// container) is decided by watching the heartbeat: it advances (alive) or
// goes stale (gone), which takes at most STALE_MS.

export const HEARTBEAT_MS = 5_000;
export const STALE_MS = 30_000;

export interface HolderRecord {
  pid: number;
  host: string;
  bootId: string;
  startedAt: string;
  /** Random per process: tells processes with the same pid and host apart. */
  process: string;
  /** Random per claim (one process may hold several things). */
  instance: string;
}

function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

const PROCESS = { pid: process.pid, host: os.hostname(), bootId: readBootId(), startedAt: new Date().toISOString(), process: randomBytes(6).toString('hex') };

/** A new record for something this process is about to hold. */
export function selfRecord(): HolderRecord {
  return { ...PROCESS, instance: randomBytes(6).toString('hex') };
}

export function describe(h: HolderRecord): string {
  return `pid ${h.pid} on host ${h.host}, started ${h.startedAt}`;
}

export function parseRecord(text: string): HolderRecord | null {
  try {
    const r = JSON.parse(text) as HolderRecord;
    return typeof r.pid === 'number' && typeof r.host === 'string' && typeof r.process === 'string' && typeof r.instance === 'string' ? r : null;
  } catch {
    return null;
  }
}

export type Verdict = { alive: boolean; sure: boolean; why: string };

/** What can be told at once from the record and its file's mtime. */
export function judge(h: HolderRecord | null, mtimeMs: number, now = Date.now()): Verdict {
  const age = now - mtimeMs;
  if (!h) return age > STALE_MS ? { alive: false, sure: true, why: 'unreadable record, no heartbeat' } : { alive: true, sure: false, why: 'record being written' };
  if (age > STALE_MS) return { alive: false, sure: true, why: `no heartbeat for ${Math.round(age / 1000)} s` };
  const me = PROCESS;
  if (h.process === me.process) return { alive: true, sure: true, why: 'this process' };
  if (h.host === me.host && h.bootId === me.bootId && h.pid !== me.pid) {
    try {
      process.kill(h.pid, 0);
      return { alive: true, sure: true, why: `process ${h.pid} is running` };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') return { alive: true, sure: true, why: `process ${h.pid} is running` };
      return { alive: false, sure: true, why: `process ${h.pid} is gone` };
    }
  }
  return { alive: true, sure: false, why: 'heartbeat is recent' };
}

/**
 * For things with no heartbeat (../engine/output-link.ts): true only when
 * the holder surely ran on this host since this boot and is gone: its pid
 * is no process now, or is ours while the record is another process's (a
 * restarted container). Anything else (another host, a shared temp dir
 * seen from another pid namespace) counts as alive.
 */
export function goneFromThisHost(h: HolderRecord | null): boolean {
  const me = PROCESS;
  if (!h || h.host !== me.host || h.bootId !== me.bootId || h.process === me.process) return false;
  if (h.pid === me.pid) return true;
  try {
    process.kill(h.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * True when `p` is a directory (not a link to one) of this process's user:
 * the only kind a sweep of a shared temp dir removes. Another user's
 * look-alike could swap a link in while it is being removed.
 */
export async function ownDirectory(p: string): Promise<boolean> {
  const st = await fsp.lstat(p).catch(() => null);
  return !!st && st.isDirectory() && (process.getuid === undefined || st.uid === process.getuid());
}

/**
 * Decides an unsure verdict by watching the file's heartbeat: alive when
 * its mtime advances, gone when it reaches STALE_MS. `file` vanishing
 * counts as gone.
 */
export async function watch(file: string, mtimeMs: number, pollMs = 500): Promise<Verdict> {
  for (;;) {
    await new Promise((r) => setTimeout(r, pollMs));
    let st;
    try {
      st = await fsp.stat(file);
    } catch {
      return { alive: false, sure: true, why: 'released' };
    }
    if (st.mtimeMs !== mtimeMs) return { alive: true, sure: true, why: 'heartbeat advanced' };
    if (Date.now() - st.mtimeMs > STALE_MS) return { alive: false, sure: true, why: `no heartbeat for ${Math.round(STALE_MS / 1000)} s` };
  }
}

/** Touches `file` every HEARTBEAT_MS; returns the stop function. */
export function heartbeat(files: () => string[]): () => void {
  const beat = () => {
    const now = new Date();
    for (const f of files()) void fsp.utimes(f, now, now).catch(() => {});
  };
  const timer = setInterval(beat, HEARTBEAT_MS);
  timer.unref();
  return () => clearInterval(timer);
}
