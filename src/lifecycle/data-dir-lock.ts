import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, heartbeat, judge, parseRecord, selfRecord, watch, type HolderRecord } from './holder.js';

// One proxy per data dir (filesystem backend). A second instance on the
// same directory would clean up temp files and references the first is
// using; it must refuse to start before it touches anything. The lock is a
// file created exclusively, holding the holder's record, with a heartbeat
// (./holder.ts). Taken by the server start (src/server.ts), never by the
// backend, so that read-only commands can open a data dir in use.

export const LOCK_NAME = '.deltaglider-proxy.lock';

/** A start-up failure with a one-line message that names the setting. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

export interface DataDirLock {
  file: string;
  release(): Promise<void>;
}

function osProblem(dataDir: string, err: NodeJS.ErrnoException): StartupError {
  const what = err.code === 'EACCES' || err.code === 'EPERM' ? 'is not writable by this user' : err.code === 'EROFS' ? 'is on a read-only filesystem' : err.code === 'ENOTDIR' ? 'is not a directory' : `cannot be used (${err.code ?? err.message})`;
  return new StartupError(`data_dir ${dataDir} ${what}: fix it or choose another with --data-dir / DELTAGLIDER_PROXY_DATA_DIR`);
}

/**
 * Takes the lock on `dataDir`, creating the directory if it does not exist.
 * Throws StartupError when another live instance holds it; takes over (with
 * a notice) a lock whose holder is gone.
 */
export async function lockDataDir(dataDir: string, notice: (msg: string) => void = () => {}): Promise<DataDirLock> {
  const file = path.join(path.resolve(dataDir), LOCK_NAME);
  try {
    await fsp.mkdir(dataDir, { recursive: true });
  } catch (err) {
    throw osProblem(dataDir, err as NodeJS.ErrnoException);
  }
  const me = selfRecord();
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fh = await fsp.open(file, 'wx');
      try {
        await fh.writeFile(`${JSON.stringify(me)}\n`);
      } finally {
        await fh.close();
      }
      const stop = heartbeat(() => [file]);
      return {
        file,
        release: async () => {
          stop();
          const now = parseRecord(await fsp.readFile(file, 'utf8').catch(() => ''));
          if (now?.instance === me.instance) await fsp.rm(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw osProblem(dataDir, err as NodeJS.ErrnoException);
    }
    let text: string;
    let st;
    try {
      [text, st] = await Promise.all([fsp.readFile(file, 'utf8'), fsp.stat(file)]);
    } catch {
      continue; // released meanwhile
    }
    const holder = parseRecord(text);
    let verdict = judge(holder, st.mtimeMs);
    if (!verdict.sure) {
      notice(`data_dir ${dataDir} is locked by ${holder ? describe(holder) : 'an unknown instance'}; watching its heartbeat (up to 30 s) to tell whether it is still running`);
      verdict = await watch(file, st.mtimeMs);
    }
    if (verdict.alive) {
      throw new StartupError(
        `data_dir ${dataDir} is in use by another deltaglider-proxy (${holder ? describe(holder) : 'unknown holder'}; lock file ${file}): stop that instance first, or give this one another data_dir (--data-dir / DELTAGLIDER_PROXY_DATA_DIR)`,
      );
    }
    if (await takeOver(file, holder)) notice(`data_dir ${dataDir}: taking over the lock of an instance that is gone (${holder ? describe(holder) : 'unreadable lock'}: ${verdict.why})`);
  }
  throw new StartupError(`data_dir ${dataDir}: could not take the lock ${file} (other instances keep starting): retry`);
}

/**
 * Moves a dead holder's lock aside. Two starters may judge the same dead
 * lock at once: the rename moves exactly one file, and a starter that
 * finds it has moved a newer holder's lock puts it back.
 */
async function takeOver(file: string, judged: HolderRecord | null): Promise<boolean> {
  const aside = `${file}.stale-${randomBytes(4).toString('hex')}`;
  try {
    await fsp.rename(file, aside);
  } catch {
    return false;
  }
  const moved = parseRecord(await fsp.readFile(aside, 'utf8').catch(() => ''));
  if (moved?.instance !== judged?.instance) {
    await fsp.link(aside, file).catch(() => {});
    await fsp.rm(aside, { force: true });
    return false;
  }
  await fsp.rm(aside, { force: true });
  return true;
}
