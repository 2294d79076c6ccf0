import { rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { goneFromThisHost, ownDirectory, parseRecord, selfRecord } from '../lifecycle/holder.js';
import { ChunkPool } from './chunk-pool.js';

// A child's stdout that the proxy reads into recycled buffers
// (./chunk-pool.ts). Node reads a child's stdout pipe into a new buffer per
// read and offers no way to change that; a socket made with `onread` reads
// into buffers of the caller's. So the child's stdout is one end of a Unix
// socket connection, the proxy reads the other.
//
// The connection is made through a listening socket in a directory only
// this process can enter (mkdtemp's 0700, in the system temp dir: the
// instance's spool directory is usually too deep for a socket address),
// closed as soon as the one connection arrives; closing it removes the
// socket file, and the directory goes when the process exits. A kill -9
// leaves it behind, holding only its owner's record: the next process to
// make one removes those whose owner is gone from this host. If anything
// about it fails, the caller falls back to a plain pipe.

/** sun_path holds 108 bytes on Linux, 104 on macOS. */
const MAX_SOCKET_PATH = 100;
/** A connection to ourselves that takes longer than this is given up (then: a pipe). */
const CONNECT_MS = 5000;
const PREFIX = 'dgp-link-';
const OWNER = 'owner.json';
let seq = 0;
let privateDir: Promise<string> | undefined;
const madeDirs = new Set<string>();

/** This process's socket directory, made on first use (and again if it went: temp cleaners). */
function linkDir(): Promise<string> {
  privateDir ??= makeLinkDir(os.tmpdir()).then(
    (dir) => {
      if (madeDirs.size === 0) process.once('exit', () => madeDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
      madeDirs.add(dir);
      return dir;
    },
    (err: Error) => {
      privateDir = undefined;
      throw err;
    },
  );
  return privateDir;
}

async function makeLinkDir(base: string): Promise<string> {
  await sweepLinkDirs(base);
  const dir = await fsp.mkdtemp(path.join(base, PREFIX));
  try {
    await fsp.writeFile(path.join(dir, OWNER), JSON.stringify(selfRecord()));
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

/**
 * Removes the socket directories (in `base`) of processes that are gone
 * from this host; returns their paths. A directory without a record is an
 * earlier build's or one being made, and is left alone, as is anything
 * that is not a directory of this user. Removing a live process's
 * directory by mistake would only send its next decode through a pipe.
 */
export async function sweepLinkDirs(base: string): Promise<string[]> {
  const out: string[] = [];
  const names = await fsp.readdir(base).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = path.join(base, name);
    if (!(await ownDirectory(dir))) continue;
    const text = await fsp.readFile(path.join(dir, OWNER), 'utf8').catch(() => '');
    if (!goneFromThisHost(parseRecord(text))) continue;
    try {
      await fsp.rm(dir, { recursive: true, force: true });
      out.push(dir);
    } catch {
      // Not ours to remove after all: leave it.
    }
  }
  return out;
}

export interface OutputLink {
  /** Give this to the child as its stdout; destroy() it here once the child has exited. */
  childEnd: net.Socket;
  /** The end the proxy reads; chunks arrive through `onChunk`, EOF as 'end'. */
  reader: net.Socket;
  pool: ChunkPool;
}

/** Closes a link that no child was started on. */
export function closeLink(link: OutputLink): void {
  link.reader.destroy();
  link.childEnd.destroy();
  link.pool.close();
}

/**
 * Opens a link whose reader calls `onChunk` with each chunk read (a
 * recyclable chunk of `pool`), its socket in `dir` (default: this
 * process's private directory). Rejects when it cannot; nothing is left
 * open then.
 */
export async function openOutputLink(onChunk: (chunk: Buffer) => void, dir?: string): Promise<OutputLink> {
  const own = dir === undefined;
  const file = path.join(dir ?? (await linkDir()), `${++seq}.sock`);
  if (Buffer.byteLength(file) > MAX_SOCKET_PATH) throw new Error(`socket path too long: ${file}`);
  const pool = new ChunkPool();
  return new Promise((resolve, reject) => {
    let reader: net.Socket | undefined;
    let childEnd: net.Socket | undefined;
    let connected = false;
    const server = net.createServer({ pauseOnConnect: true });
    const fail = (err: Error) => {
      clearTimeout(timer);
      // The directory may be gone (libuv reports a missing one as EACCES): make it again next time.
      if (own) privateDir = undefined;
      server.close();
      reader?.destroy();
      childEnd?.destroy();
      pool.close();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error('output link: no connection')), CONNECT_MS);
    const done = () => {
      if (!childEnd || !connected) return;
      clearTimeout(timer);
      resolve({ childEnd, reader: reader!, pool });
    };
    server.once('error', fail);
    server.once('connection', (s) => {
      // One connection only; closing the server removes the socket file.
      server.close();
      childEnd = s;
      done();
    });
    server.listen(file, () => {
      reader = net.connect({
        path: file,
        onread: {
          buffer: () => pool.take(),
          // Pausing is the consumer's (reader.pause()), not the return value's.
          callback: (n: number, buf: Uint8Array) => {
            onChunk(pool.chunk(buf as Buffer, n));
            return true;
          },
        },
      });
      reader.once('error', fail);
      reader.once('connect', () => {
        reader!.off('error', fail);
        connected = true;
        done();
      });
    });
  });
}
