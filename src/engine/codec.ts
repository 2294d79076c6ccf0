import { execa } from 'execa';
import * as fsp from 'node:fs/promises';
import os from 'node:os';
import type { Readable } from 'node:stream';
import { CodecPool, type PoolOptions, type PoolStats, type Slot } from './codec-pool.js';
import { DecodeAhead, MEMORY_AHEAD_TOTAL, SpoolBudget } from './decode-ahead.js';
import { closeLink, openOutputLink, type OutputLink } from './output-link.js';
import { tempPath } from './spool.js';

// The xdelta3 codec, run as the Debian/Homebrew `xdelta3` binary.
//
// Flags that matter for correctness and size:
//   -D        never let xdelta3 decompress (and recompress) gzip/bzip2/xz
//             inputs: the bytes we return must be the bytes we were given.
//   -B N      source window. xdelta3's default is 64 MiB: matches beyond it
//             are lost (near-full-size deltas, very slow encodes). We use the
//             larger of 64 MiB and the reference size, capped by config
//             because xdelta3 holds the window in memory. Never below 64 MiB:
//             a smaller window also shrinks xdelta3's match index, which
//             costs up to ~1.5 % in delta size (docs/configuration.md).
//   -9        match-search level. The original DeltaGlider CLI encodes with
//             -9 and the default 64 MiB window; with the same level and a
//             window at least as large, our deltas are never larger.
//   -S X      secondary compressor; xdelta3's own default when unset.
//   -A        no application header: xdelta3 would otherwise record the input
//             file names (temp paths) in every delta; -s names the source on
//             decode anyway.

export interface CodecOptions {
  binary: string;
  /** Match-search level, 0 (fastest) to 9. */
  level: number;
  /** Secondary compressor: 'default' (xdelta3's) | 'none' | 'djw' | 'fgk' | 'lzma'. */
  secondary: string;
  /** Upper bound for -B, in bytes. */
  maxWindow: number;
  /** Process, memory and queue limits (./codec-pool.ts); defaults below. */
  pool?: Partial<PoolOptions>;
  /** Where decodes spool ahead of slow readers (default: the system temp dir). */
  spoolDir?: string;
  /** Disk budget of those spools, bytes. */
  spoolBytes?: number;
  /** Where the sockets of recycling decodes are made (./output-link.ts; default: a private temp dir). */
  linkDir?: string;
}

export const POOL_DEFAULTS = {
  memoryBytes: 1024 * 1024 * 1024,
  queueLength: 256,
  spoolBytes: 1024 * 1024 * 1024,
};

export type CodecStats = PoolStats & {
  spoolBytes: number;
  stoppedEarly: number;
  /** Decodes read into recycled buffers (./output-link.ts), and those that fell back to a pipe. */
  linked: number;
  linkFailed: number;
};

/** How often a running encoder's output size is looked at (OutputLimit). */
const LIMIT_POLL_MS = 100;

/**
 * Stops an encoder once its delta has reached `limit` bytes. xdelta3 only
 * ever appends to its output, so a delta that has reached the size at which
 * it would be dropped (max_delta_ratio) is certain to be dropped: the rest
 * of the encode is wasted. That is the slow case, too: a target with little
 * in common with the reference and not compressible (a fresh .tgz, .xz or
 * encrypted dump) encodes at 3-6 MB/s with -9 and LZMA secondary
 * compression, against 30+ MB/s for a close version. Stopping at the limit
 * (0.5 of the size by default) saves about half of that time, and the
 * stored bytes are exactly what a full encode would have left.
 */
class OutputLimit {
  /** The largest output size seen, bytes. */
  seen = 0;
  tripped = false;
  private readonly timer?: NodeJS.Timeout;
  private looking = false;

  constructor(
    private readonly file: string,
    private readonly limit: number | undefined,
    private readonly stop: () => void,
  ) {
    if (limit === undefined) return;
    this.timer = setInterval(() => void this.look(), LIMIT_POLL_MS);
    this.timer.unref();
  }

  private async look(): Promise<void> {
    if (this.looking || this.tripped) return;
    this.looking = true;
    try {
      this.seen = Math.max(this.seen, (await fsp.stat(this.file)).size);
    } catch {
      // Not created yet (or gone with a failed encoder): nothing to judge.
    } finally {
      this.looking = false;
    }
    if (this.seen >= this.limit! && !this.tripped) {
      this.tripped = true;
      this.end();
      this.stop();
    }
  }

  end(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

const MIB = 1 << 20;
export const DEFAULT_WINDOW = 64 * MIB;

export class XdeltaError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'XdeltaError';
  }
}

export class Codec {
  private readonly pool: CodecPool;
  private readonly spoolBudget: SpoolBudget;
  /** Memory all decodes may hold ahead of their readers before they spool (./decode-ahead.ts). */
  private readonly aheadMemory = new SpoolBudget(MEMORY_AHEAD_TOTAL);
  private stoppedEarly = 0;
  private linked = 0;
  private linkFailed = 0;

  constructor(readonly opts: CodecOptions) {
    this.pool = new CodecPool({
      maxProcesses: opts.pool?.maxProcesses || os.availableParallelism(),
      memoryBytes: opts.pool?.memoryBytes ?? POOL_DEFAULTS.memoryBytes,
      queueLength: opts.pool?.queueLength ?? POOL_DEFAULTS.queueLength,
    });
    this.spoolBudget = new SpoolBudget(opts.spoolBytes ?? POOL_DEFAULTS.spoolBytes);
  }

  /** Pool figures for metrics: processes running, jobs queued, runs and their time. */
  get stats(): CodecStats {
    return { ...this.pool.stats, spoolBytes: this.spoolBudget.used, stoppedEarly: this.stoppedEarly, linked: this.linked, linkFailed: this.linkFailed };
  }

  /**
   * Memory charged to the pool for one process, from measurements of
   * xdelta3 3.0 (docs/operations.md, "Codec pool"): an encoder allocates its
   * match index with the window, about 2.5 x -B at the 64 MiB floor; a
   * decoder holds no more of the source than exists, plus its buffers.
   */
  charge(op: 'encode' | 'decode', refSize: number, window?: number): number {
    const w = window ?? this.window(refSize);
    return op === 'encode' ? Math.ceil(2.5 * w) : Math.min(w, Math.ceil(refSize / MIB) * MIB) + 16 * MIB;
  }

  /** The -B value for a reference of this size. */
  window(refSize: number): number {
    const w = Math.max(DEFAULT_WINDOW, Math.ceil(refSize / MIB) * MIB);
    return Math.min(w, this.opts.maxWindow);
  }

  /**
   * The -B for decoding a delta whose windows each copy from at most
   * `maxSegment` bytes of the reference (./vcdiff.ts): twice that, so the
   * 32-block LRU xdelta3 reads the reference into never evicts a block its
   * window still needs, and at least 1 MiB. Smaller than the reference, the
   * buffer is filled as the decode needs it rather than all before the
   * first output byte (100 MiB delta: first byte after ~35 ms, not ~100 ms,
   * and 20-30 % less time in all). A reference is a local file, so xdelta3
   * can seek in it: a smaller -B than the encoder's is valid for decoding.
   */
  decodeWindow(refSize: number, maxSegment?: number): number {
    const full = this.window(refSize);
    if (maxSegment === undefined || !Number.isSafeInteger(maxSegment) || maxSegment < 0) return full;
    let w = MIB;
    while (w < 2 * maxSegment && w < full) w *= 2;
    return Math.min(w, full);
  }

  private common(window: number): string[] {
    return ['-f', '-D', '-B', String(window)];
  }

  private encodeArgs(ref: string, refSize: number): string[] {
    const args = ['-e', '-A', ...this.common(this.window(refSize)), `-${this.opts.level}`];
    if (this.opts.secondary !== 'default') args.push('-S', this.opts.secondary);
    args.push('-s', ref);
    return args;
  }

  /**
   * An encoder fed while the upload arrives: the target streams into
   * `stdin`, the delta goes to the file `out`. `done` settles when xdelta3
   * exits, after `stdin` has ended: true when the delta is complete, false
   * when it was stopped on reaching `limit` bytes (OutputLimit), `stopped()`
   * then being the size it had reached. Null when no codec slot is free now.
   */
  encodeStream(
    ref: string,
    refSize: number,
    out: string,
    limit?: number,
  ): { stdin: NodeJS.WritableStream & { destroy(): void }; done: Promise<boolean>; stopped(): number | null; kill(): void } | null {
    // Only with a slot free right now, and preemptible: a queued job stops
    // it, and the upload is then encoded after it arrives.
    let kill = () => {};
    const slot = this.pool.tryAcquire(this.charge('encode', refSize), () => kill());
    if (!slot) return null;
    // buffer: execa 9 also keeps a stdout sent to a file in memory, as a
    // string (the whole delta: as large as the upload for compressed data).
    const child = execa(this.opts.binary, this.encodeArgs(ref, refSize), { stdin: 'pipe', stdout: { file: out }, stderr: 'pipe', buffer: { stdout: false, stderr: true } });
    kill = () => void child.kill();
    const watch = new OutputLimit(out, limit, () => child.kill());
    const done = child.then(
      () => {
        watch.end();
        slot.release();
        return true;
      },
      (err: Error) => {
        watch.end();
        slot.release();
        if (watch.tripped) {
          this.stoppedEarly++;
          return false;
        }
        throw new XdeltaError(`xdelta3 encode failed: ${err.message}`, err);
      },
    );
    done.catch(() => {});
    return { stdin: child.stdin!, done, stopped: () => (watch.tripped ? watch.seen : null), kill: () => void child.kill() };
  }

  /** The most xdelta3 processes run at once. */
  get maxProcesses(): number {
    return this.pool.opts.maxProcesses;
  }

  /**
   * Encodes `target` against `ref` into the file `out`. `nice`: at the
   * lowest CPU priority (background work). `limit`: stop once the delta
   * reaches this many bytes (OutputLimit), returning false; `out` is then
   * incomplete. True when the delta is complete.
   */
  async encode(ref: string, refSize: number, target: string, out: string, signal?: AbortSignal, opts: { nice?: boolean; limit?: number } = {}): Promise<boolean> {
    const args = [...this.encodeArgs(ref, refSize), target, out];
    // Waits for a slot; BusyError when the queue is full.
    const slot = await this.pool.acquire(this.charge('encode', refSize), signal);
    let watch: OutputLimit | undefined;
    try {
      const child = execa(this.opts.binary, args, { cancelSignal: signal, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' });
      watch = new OutputLimit(out, opts.limit, () => child.kill());
      if (opts.nice && child.pid) {
        try {
          os.setPriority(child.pid, 19);
        } catch {
          // Not permitted here (some containers): it then runs at normal priority.
        }
      }
      await child;
      return true;
    } catch (err) {
      if (watch?.tripped && !signal?.aborted) {
        this.stoppedEarly++;
        return false;
      }
      throw new XdeltaError(`xdelta3 encode failed: ${(err as Error).message}`, err);
    } finally {
      watch?.end();
      slot.release();
    }
  }

  /**
   * Decodes `delta` against `ref`, streaming the result. The returned stream
   * errors if xdelta3 exits non-zero, so a corrupt delta never looks like a
   * short but complete object, and ends only after a clean exit.
   *
   * Throws BusyError at once when the pool's queue is full. Otherwise the
   * stream waits for a slot, then emits xdelta3's output as it comes;
   * output the reader is not ready for is spooled to a temp file
   * (./decode-ahead.ts), so the slot is released when xdelta3 exits, however
   * slowly the client reads. The temp file goes when the stream closes.
   *
   * With `recycle`, xdelta3's output is read into recycled buffers
   * (./chunk-pool.ts): the stream's chunks go back for reuse when their
   * last consumer passes them to ChunkPool.recycle(). Any consumer that
   * does not leaves them to the garbage collector.
   */
  decode(ref: string, refSize: number, delta: string | Readable, signal?: AbortSignal, maxSegment?: number, recycle = false): Readable {
    const ac = new AbortController();
    const window = this.decodeWindow(refSize, maxSegment);
    let granted: Promise<Slot>;
    try {
      granted = this.pool.acquire(this.charge('decode', refSize, window), ac.signal);
    } catch (err) {
      if (typeof delta !== 'string') delta.destroy();
      throw err;
    }
    let kill = () => {};
    const out = new DecodeAhead(
      tempPath(this.opts.spoolDir ?? os.tmpdir(), 'decode'),
      this.spoolBudget,
      () => {
        ac.abort();
        kill();
        if (typeof delta !== 'string') delta.destroy();
      },
      this.aheadMemory,
    );
    const onAbort = () => out.destroy(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    out.once('close', () => signal?.removeEventListener('abort', onAbort));
    const start = (slot: Slot, link?: OutputLink) => {
      if (out.destroyed) {
        if (link) closeLink(link);
        return slot.release();
      }
      const args = ['-d', '-c', ...this.common(window), '-s', ref];
      if (typeof delta === 'string') args.push(delta);
      let child;
      try {
        child = execa(this.opts.binary, args, {
          stdin: typeof delta === 'string' ? 'ignore' : 'pipe',
          // The child gets its own copy of the link's end. Ours is closed
          // once the child has exited (execa counts it closed any earlier
          // as a failure), and the reader sees EOF then.
          stdout: link ? link.childEnd : 'pipe',
          stderr: 'pipe',
          buffer: { stdout: false, stderr: true },
          encoding: 'buffer',
        });
      } catch (err) {
        if (link) closeLink(link);
        slot.release();
        out.destroy(err as Error);
        return;
      }
      kill = () => void child.kill();
      if (typeof delta !== 'string') delta.pipe(child.stdin!);
      out.attach(link ? link.reader : child.stdout!, link?.pool);
      child.then(
        () => {
          link?.childEnd.destroy();
          slot.release();
          out.exitedOk();
        },
        (err: Error) => {
          link?.childEnd.destroy();
          slot.release();
          // execa's promise rejects on a non-zero exit; surface it on the stream.
          out.destroy(new XdeltaError(`xdelta3 decode failed: ${err.message}`, err));
        },
      );
    };
    granted.then(
      (slot) => {
        if (!recycle || out.destroyed) return start(slot);
        // A link that cannot be made costs only the recycling: a pipe then.
        openOutputLink((c) => out.feed(c), this.opts.linkDir).then(
          (link) => {
            this.linked++;
            start(slot, link);
          },
          () => {
            this.linkFailed++;
            start(slot);
          },
        );
      },
      (err: Error) => out.destroy(err),
    );
    return out;
  }

  /**
   * A one-off xdelta3 decode with arguments of the caller's (`-d ... -s ref
   * delta out`), under the pool's limits like every other run: waits for a
   * slot, BusyError when the queue is full. Resolves with the exit code.
   */
  async decodeWith(args: string[], refSize: number, signal?: AbortSignal): Promise<{ exitCode?: number; stderr: string }> {
    const slot = await this.pool.acquire(this.charge('decode', refSize), signal);
    try {
      const r = await execa(this.opts.binary, args, { reject: false, cancelSignal: signal, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' });
      return { exitCode: r.exitCode, stderr: String(r.stderr) };
    } finally {
      slot.release();
    }
  }

  /** Checks that the binary runs; returns its version line. */
  static async probe(binary: string): Promise<string> {
    const r = await execa(binary, ['-V'], { reject: false, all: true });
    if (r.failed && !r.all) throw new Error(`cannot run ${binary}: ${r.shortMessage}`);
    const line = String(r.all ?? '').split('\n')[0];
    if (!/xdelta/i.test(line)) throw new Error(`${binary} -V printed no xdelta version`);
    return line;
  }
}
