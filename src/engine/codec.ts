import { execa } from 'execa';
import type { Readable } from 'node:stream';

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
  constructor(readonly opts: CodecOptions) {}

  /** The -B value for a reference of this size. */
  window(refSize: number): number {
    const w = Math.max(DEFAULT_WINDOW, Math.ceil(refSize / MIB) * MIB);
    return Math.min(w, this.opts.maxWindow);
  }

  private common(refSize: number): string[] {
    return ['-f', '-D', '-B', String(this.window(refSize))];
  }

  private encodeArgs(ref: string, refSize: number): string[] {
    const args = ['-e', '-A', ...this.common(refSize), `-${this.opts.level}`];
    if (this.opts.secondary !== 'default') args.push('-S', this.opts.secondary);
    args.push('-s', ref);
    return args;
  }

  /**
   * An encoder fed while the upload arrives: the target streams into
   * `stdin`, the delta goes to the file `out`. `done` settles when xdelta3
   * exits, after `stdin` has ended.
   */
  encodeStream(ref: string, refSize: number, out: string): { stdin: NodeJS.WritableStream & { destroy(): void }; done: Promise<void>; kill(): void } {
    const child = execa(this.opts.binary, this.encodeArgs(ref, refSize), { stdin: 'pipe', stdout: { file: out }, stderr: 'pipe' });
    const done = child.then(
      () => undefined,
      (err: Error) => {
        throw new XdeltaError(`xdelta3 encode failed: ${err.message}`, err);
      },
    );
    done.catch(() => {});
    return { stdin: child.stdin!, done, kill: () => void child.kill() };
  }

  /** Encodes `target` against `ref` into the file `out`. */
  async encode(ref: string, refSize: number, target: string, out: string, signal?: AbortSignal): Promise<void> {
    const args = [...this.encodeArgs(ref, refSize), target, out];
    try {
      await execa(this.opts.binary, args, { cancelSignal: signal, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' });
    } catch (err) {
      throw new XdeltaError(`xdelta3 encode failed: ${(err as Error).message}`, err);
    }
  }

  /**
   * Decodes `delta` against `ref`, streaming the result. The returned stream
   * errors if xdelta3 exits non-zero, so a corrupt delta never looks like a
   * short but complete object.
   */
  decode(ref: string, refSize: number, delta: string | Readable, signal?: AbortSignal): Readable {
    const args = ['-d', '-c', ...this.common(refSize), '-s', ref];
    if (typeof delta === 'string') args.push(delta);
    const child = execa(this.opts.binary, args, {
      cancelSignal: signal,
      stdin: typeof delta === 'string' ? 'ignore' : 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: { stdout: false, stderr: true },
      encoding: 'buffer',
    });
    if (typeof delta !== 'string') delta.pipe(child.stdin!);
    const out = child.stdout!;
    // execa's promise rejects on a non-zero exit; surface it on the stream.
    child.catch((err: Error) => out.destroy(new XdeltaError(`xdelta3 decode failed: ${err.message}`, err)));
    return out;
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
