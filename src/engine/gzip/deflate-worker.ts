import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { rawDeflateOptions, type DeflateParams } from './recipe.js';

// pako's deflate in a worker thread, for large members (./rebuild.ts).
//
// Rebuilding a gzip member runs pako, JavaScript, at about 10-20 MB/s: a
// 159 MiB tar took about 9 s of CPU. On the event loop that CPU is taken
// from every other request for the whole time; in a worker it runs on
// another core while the loop stays free. Workers are bounded (one per core,
// process-wide); a rebuild waits for one rather than start more.
//
// The worker is an eval'd CommonJS script (no TypeScript loader needed in
// the worker, tests included) that loads the very pako package the proxy
// pins (its CommonJS build; the bytes are checked downstream anyway: every
// rebuilt object is verified against its SHA-256 before its last byte leaves).

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { Deflate } = require(workerData.pako);
let d = null;
let out = [];
parentPort.on('message', (m) => {
  try {
    if (m.init) {
      d = new Deflate(m.init);
      d.onData = (c) => out.push(c.slice());
      d.onEnd = () => {};
      return parentPort.postMessage({ ok: true });
    }
    d.push(m.data, m.final);
    const chunks = out;
    out = [];
    parentPort.postMessage({ chunks, err: d.err, msg: d.msg }, chunks.map((c) => c.buffer));
  } catch (e) {
    parentPort.postMessage({ error: String(e && e.message || e) });
  }
});
`;

/** Workers in use and callers waiting for one (process-wide). */
let running = 0;
const waiting: (() => void)[] = [];
const limit = () => Math.max(1, availableParallelism());

/** Workers running now (tests check that every rebuild lets go of its own). */
export const workersInUse = (): number => running;
/** Rebuilds waiting for a worker. */
export const workersAwaited = (): number => waiting.length;

/**
 * A worker slot; waits for one when all are taken. A waiter whose reader
 * went away (`signal`) leaves the queue at once rather than take a slot it
 * no longer needs.
 */
async function acquire(signal?: AbortSignal): Promise<() => void> {
  signal?.throwIfAborted();
  if (running >= limit()) {
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', leave);
        resolve();
      };
      const leave = () => {
        const i = waiting.indexOf(go);
        if (i >= 0) waiting.splice(i, 1);
        reject(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
      };
      waiting.push(go);
      signal?.addEventListener('abort', leave, { once: true });
    });
  } else running++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const next = waiting.shift();
    if (next) next();
    else running--;
  };
}

interface Reply {
  ok?: boolean;
  chunks?: Uint8Array[];
  err?: number;
  msg?: string;
  error?: string;
}

/** One member's raw deflate in a worker: push() as pako's, but awaited, returning the output. */
export class WorkerDeflate {
  private pendingReply?: { resolve: (r: Reply) => void; reject: (e: Error) => void };
  err = 0;
  msg = '';

  private constructor(
    private readonly worker: Worker,
    private readonly release: () => void,
  ) {
    worker.on('message', (r: Reply) => this.settle((p) => p.resolve(r)));
    worker.on('error', (e) => this.settle((p) => p.reject(e)));
    worker.on('exit', () => this.settle((p) => p.reject(new Error('deflate worker exited'))));
  }

  static async open(params: DeflateParams, chunkSize: number, signal?: AbortSignal): Promise<WorkerDeflate> {
    const release = await acquire(signal);
    let worker: Worker;
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { pako: createRequire(import.meta.url).resolve('pako') } });
    } catch (err) {
      release();
      throw err;
    }
    const d = new WorkerDeflate(worker, release);
    try {
      // The very options the event-loop path uses: the output must be the same byte for byte.
      await d.call({ init: rawDeflateOptions(params, chunkSize) });
    } catch (err) {
      await d.close();
      throw err;
    }
    return d;
  }

  /** Deflates `data` (the last input when `final`); the compressed bytes it produced. */
  async push(data: Uint8Array, final: boolean): Promise<Buffer[]> {
    const r = await this.call({ data, final });
    this.err = r.err ?? 0;
    this.msg = r.msg ?? '';
    return (r.chunks ?? []).map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  }

  /** Ends the worker and frees its slot (idempotent). */
  async close(): Promise<void> {
    this.release();
    await this.worker.terminate();
  }

  private call(message: unknown): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      this.pendingReply = {
        resolve: (r) => (r.error ? reject(new Error(`deflate worker: ${r.error}`)) : resolve(r)),
        reject,
      };
      this.worker.postMessage(message);
    });
  }

  private settle(f: (p: NonNullable<WorkerDeflate['pendingReply']>) => void): void {
    const p = this.pendingReply;
    this.pendingReply = undefined;
    if (p) f(p);
  }
}
