// Rebuilds the original gzip bytes from the decompressed bytes and a recipe, as a
// stream: header, deflate output, trailer per member, then the tail. Memory stays at
// one input step plus what pako holds for its window (under 1 MiB at memLevel 9).
// Large members are deflated in a worker thread (./deflate-worker.ts), small ones
// here: a worker's start costs more than a small member's deflate.
import { Readable } from 'node:stream';
import { WorkerDeflate } from './deflate-worker.js';
import { newRawDeflate, recipeProblem, type DeflateParams, type GzipRecipe } from './recipe.js';

const STEP = 64 * 1024;
/** Members of at least this many decompressed bytes go to a worker, in steps of WORKER_STEP. */
export const WORKER_MIN = 4 << 20;
const WORKER_STEP = 1 << 20;

interface Deflater {
  push(data: Uint8Array, final: boolean): Promise<Buffer[]>;
  err: number;
  msg: string;
  close(): Promise<void>;
}

/** pako on this thread, behind the worker's interface. */
function localDeflate(params: DeflateParams): Deflater {
  const d = newRawDeflate(params, STEP);
  let out: Buffer[] = [];
  d.onData = (c: Uint8Array) => void out.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  d.onEnd = () => {};
  return {
    push(data, final) {
      d.push(data, final);
      const chunks = out;
      out = [];
      return Promise.resolve(chunks);
    },
    get err() {
      return d.err;
    },
    get msg() {
      return d.msg ?? '';
    },
    close: () => Promise.resolve(),
  };
}

async function* generate(raw: Readable, recipe: GzipRecipe, workerMin: number, gone: AbortSignal): AsyncGenerator<Buffer> {
  const it = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  let carry: Buffer = Buffer.alloc(0);
  let done = false;
  try {
    for (const m of recipe.members) {
      yield Buffer.from(m.header, 'base64');
      const remote = m.rawSize >= workerMin;
      const step = remote ? WORKER_STEP : STEP;
      const d: Deflater = remote ? await WorkerDeflate.open(m.params, STEP, gone) : localDeflate(m.params);
      try {
        let produced = 0;
        let left = m.rawSize;
        while (left > 0) {
          if (carry.length === 0) {
            const n = await it.next();
            if (n.done) throw new Error('decompressed data is shorter than the gzip recipe says');
            carry = Buffer.isBuffer(n.value) ? n.value : Buffer.from(n.value);
            continue;
          }
          const take = carry.subarray(0, Math.min(left, carry.length, step));
          carry = carry.subarray(take.length);
          left -= take.length;
          for (const c of await d.push(take, false)) {
            produced += c.length;
            yield c;
          }
        }
        for (const c of await d.push(new Uint8Array(0), true)) {
          produced += c.length;
          yield c;
        }
        if (d.err !== 0) throw new Error(`deflate failed: ${d.msg}`);
        if (produced !== m.deflateSize) throw new Error('rebuilt deflate stream differs in size from the recipe');
      } finally {
        await d.close();
      }
      yield Buffer.from(m.trailer, 'hex');
    }
    if (carry.length > 0 || !(await it.next()).done) {
      throw new Error('decompressed data is longer than the gzip recipe says');
    }
    done = true;
    if (recipe.tail) yield Buffer.from(recipe.tail, 'base64');
  } finally {
    if (!done) raw.destroy();
  }
}

/**
 * Gzip bytes out of decompressed bytes in; errors (never wrong bytes silently) on a
 * mismatch of sizes. `workerMin`: members from this size on are deflated in a worker.
 */
export function rebuildGzip(raw: Readable, recipe: GzipRecipe, workerMin = WORKER_MIN): Readable {
  const problem = recipeProblem(recipe);
  if (problem) {
    raw.destroy();
    const r = new Readable({ read() {} });
    process.nextTick(() => r.destroy(new Error(problem)));
    return r;
  }
  // A reader that goes away while this waits for a worker slot leaves the
  // queue. destroy() ends the generator with return(), which an async
  // generator only runs once its pending await settles, so the wait is
  // aborted first ('close' would come only after it).
  const gone = new AbortController();
  const out = Readable.from(generate(raw, recipe, workerMin, gone.signal), { objectMode: false });
  const destroy = out._destroy.bind(out);
  out._destroy = (err, cb) => {
    gone.abort();
    destroy(err, cb);
  };
  return out;
}
