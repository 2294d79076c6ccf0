// Rebuilds the original gzip bytes from the decompressed bytes and a recipe, as a
// stream: header, deflate output, trailer per member, then the tail. Memory stays at
// one input step plus what pako holds for its window (under 1 MiB at memLevel 9).
import { Readable } from 'node:stream';
import { newRawDeflate, recipeProblem, type GzipRecipe } from './recipe.js';

const STEP = 64 * 1024;

async function* generate(raw: Readable, recipe: GzipRecipe): AsyncGenerator<Buffer> {
  const it = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  let carry: Buffer = Buffer.alloc(0);
  let done = false;
  try {
    for (const m of recipe.members) {
      yield Buffer.from(m.header, 'base64');
      const d = newRawDeflate(m.params, STEP);
      let out: Buffer[] = [];
      let produced = 0;
      d.onData = (c: Uint8Array) => {
        produced += c.length;
        out.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
      };
      d.onEnd = () => {};
      let left = m.rawSize;
      while (left > 0) {
        if (carry.length === 0) {
          const n = await it.next();
          if (n.done) throw new Error('decompressed data is shorter than the gzip recipe says');
          carry = Buffer.isBuffer(n.value) ? n.value : Buffer.from(n.value);
          continue;
        }
        const take = carry.subarray(0, Math.min(left, carry.length, STEP));
        carry = carry.subarray(take.length);
        left -= take.length;
        d.push(take, false);
        if (out.length > 0) {
          yield* out;
          out = [];
        }
      }
      d.push(new Uint8Array(0), true);
      if (d.err !== 0) throw new Error(`deflate failed: ${d.msg}`);
      yield* out;
      if (produced !== m.deflateSize) throw new Error('rebuilt deflate stream differs in size from the recipe');
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

/** Gzip bytes out of decompressed bytes in; errors (never wrong bytes silently) on a mismatch of sizes. */
export function rebuildGzip(raw: Readable, recipe: GzipRecipe): Readable {
  const problem = recipeProblem(recipe);
  if (problem) {
    raw.destroy();
    const r = new Readable({ read() {} });
    process.nextTick(() => r.destroy(new Error(problem)));
    return r;
  }
  return Readable.from(generate(raw, recipe), { objectMode: false });
}
