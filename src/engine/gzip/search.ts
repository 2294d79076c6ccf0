// Finds deflate parameters that make pako emit one member's compressed stream exactly.
// Each candidate re-deflates the raw bytes and compares its output with the original as
// it appears, so a wrong candidate costs only up to its first differing byte (usually
// the end of the first deflate block, some tens of KiB of input).
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { newRawDeflate, type DeflateParams } from './recipe.js';
import { RangeReader } from './reader.js';

/** Input per deflate call: small, so a mismatch shows early and the event loop breathes. */
const STEP = 16 * 1024;
/** Output chunk: the granularity at which output is compared. */
const OUT_CHUNK = 4 * 1024;
/** Deflate calls between yields to the event loop (a few ms of work). */
const CALLS_PER_YIELD = 4;

class Mismatch extends Error {}
class PrefixMatched extends Error {}

export interface MemberRanges {
  deflateOffset: number;
  deflateSize: number;
  rawOffset: number;
  rawSize: number;
}

export interface SearchLimits {
  deadline: number;
  signal?: AbortSignal;
  /**
   * Bytes all candidates together may still feed to deflate: a budget of work, the
   * same on an idle machine and a busy one (the deadline is the wall-clock backstop).
   */
  work?: { left: number };
}

function expired(limits: SearchLimits): boolean {
  return Date.now() > limits.deadline || limits.signal?.aborted === true || (limits.work !== undefined && limits.work.left <= 0);
}

/**
 * 'yes' when `p` reproduces the member (or its first `prefix` compressed bytes), 'no'
 * when it does not, 'timeout' when time ran out first.
 */
export async function reproduces(
  p: DeflateParams,
  rawFd: number,
  gzFd: number,
  m: MemberRanges,
  limits: SearchLimits,
  prefix = Infinity,
): Promise<'yes' | 'no' | 'timeout'> {
  const expected = new RangeReader(gzFd, m.deflateOffset, m.deflateSize);
  const input = new RangeReader(rawFd, m.rawOffset, m.rawSize);
  const d = newRawDeflate(p, OUT_CHUNK);
  let compared = 0;
  d.onData = (c: Uint8Array) => {
    if (compared >= prefix) throw new PrefixMatched();
    compared += c.length;
    let i = 0;
    while (i < c.length) {
      const e = expected.next(c.length - i);
      if (e.length === 0 || !e.equals(c.subarray(i, i + e.length))) throw new Mismatch();
      i += e.length;
    }
  };
  d.onEnd = () => {};
  try {
    let calls = 0;
    while (input.remaining > 0) {
      const chunk = input.next(STEP);
      if (limits.work) limits.work.left -= chunk.length;
      d.push(chunk, false);
      if (++calls % CALLS_PER_YIELD === 0) {
        await yieldToLoop();
        if (expired(limits)) return 'timeout';
      }
    }
    d.push(new Uint8Array(0), true);
  } catch (err) {
    if (err instanceof Mismatch) return 'no';
    if (err instanceof PrefixMatched) return 'yes';
    throw err;
  }
  return d.err === 0 && expected.remaining === 0 ? 'yes' : 'no';
}

/** The first candidate that reproduces the member; null if none does or time runs out. */
export async function findParams(
  candidates: DeflateParams[],
  rawFd: number,
  gzFd: number,
  m: MemberRanges,
  limits: SearchLimits,
  prefix = Infinity,
): Promise<{ params: DeflateParams | null; tried: number; timedOut: boolean }> {
  let tried = 0;
  for (const p of candidates) {
    await yieldToLoop();
    if (expired(limits)) return { params: null, tried, timedOut: true };
    tried++;
    const r = await reproduces(p, rawFd, gzFd, m, limits, prefix);
    if (r === 'yes') return { params: p, tried, timedOut: false };
    if (r === 'timeout') return { params: null, tried, timedOut: true };
  }
  return { params: null, tried, timedOut: false };
}
