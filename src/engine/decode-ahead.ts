import { open, rm, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ChunkPool } from './chunk-pool.js';

// Decoding ahead of a slow reader. xdelta3's output is passed straight to
// the reader while the reader keeps up; whatever the reader is not ready
// for goes to a temp file that the reader then follows. xdelta3 therefore
// runs at its own speed and gives its codec slot back when it exits, not
// when the client has read the last byte. When the reader catches up with
// the file, the file is emptied and its bytes are returned to the budget.
//
// All spool files share one disk budget; a stream that would exceed it
// pauses xdelta3 (which then keeps its slot, the behaviour without a spool)
// until space frees.
//
// Before the disk, a reader that falls a little behind is given a few MiB
// in memory (MEMORY_AHEAD per stream, from a budget shared by all decodes).
// A fast client lags xdelta3 by a chunk or two now and then; with no
// memory tier the first such lag sent the rest of the object through the
// file (written, then read back: the reader then fell further behind), and
// a 100 MiB delta GET took 0.45-0.6 s instead of 0.25-0.3 s with 47-64 MB
// spooled (bench/delta-get.ts, per-GET spool counts).

/** Disk budget shared by the decode spools of one codec. */
export class SpoolBudget {
  used = 0;
  private readonly waiters = new Set<() => void>();

  constructor(readonly max: number) {}

  add(n: number): void {
    this.used += n;
  }

  sub(n: number): void {
    this.used -= n;
    // With a zero budget a stream spools one chunk at a time.
    if (this.used >= this.max && this.used > 0) return;
    for (const w of [...this.waiters]) {
      this.waiters.delete(w);
      w();
    }
  }

  get full(): boolean {
    return this.used >= this.max;
  }

  onFree(fn: () => void): () => void {
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }
}

const READ_SIZE = 1 << 20;
/** Bytes one stream may hold in memory ahead of its reader before it spools. */
export const MEMORY_AHEAD = 16 << 20;
/** Memory all the streams of one codec may hold ahead of their readers together. */
export const MEMORY_AHEAD_TOTAL = 64 << 20;
/**
 * Bytes handed to the spool file's writes and not yet on disk. Above it
 * xdelta3 is paused until the writes catch up: its output can outrun the
 * disk, and the budget (codec_spool_mb, 1 GiB by default) counts disk, not
 * memory. Without this bound the pending chunks of a 1.1 GB decode held 700
 * MB of RSS.
 */
export const MAX_UNWRITTEN = 8 << 20;

export class DecodeAhead extends Readable {
  private src?: Readable;
  /** Where a pooled reader's buffers come from (attach). */
  private pool?: ChunkPool;
  private fh?: FileHandle;
  private chain: Promise<unknown> = Promise.resolve();
  /** Bytes handed to the file (some may still be in flight). */
  private queued = 0;
  /** Bytes on disk. */
  private written = 0;
  /** Bytes of the file already given to the reader. */
  private readPos = 0;
  /** Budget charged for the file's current content. */
  private charged = 0;
  private wanting = false;
  private reading = false;
  private srcEnded = false;
  private exited = false;
  private stopWaiting?: () => void;
  /** Paused because too much waits to be written (MAX_UNWRITTEN). */
  private writesBehind = false;
  /** Chunks held in memory for the reader; they come before anything in the file. */
  private readonly mem: Buffer[] = [];
  private memBytes = 0;

  constructor(
    private readonly file: string,
    private readonly budget: SpoolBudget,
    private readonly onClose: () => void,
    private readonly memory: SpoolBudget = new SpoolBudget(0),
  ) {
    super({ highWaterMark: READ_SIZE });
  }

  /** Bytes spooled and not yet read (for tests and metrics). */
  get spooled(): number {
    return this.queued - this.readPos;
  }

  /** Buffers the recycling reader allocated, or undefined without one (for tests). */
  get buffersMade(): number | undefined {
    return this.pool?.made;
  }

  /** Bytes held in memory ahead of the reader (for tests). */
  get held(): number {
    return this.memBytes;
  }

  /**
   * Starts consuming xdelta3's stdout: its 'data' events, or, with `pool`,
   * the chunks its reader passes to feed() (./output-link.ts).
   */
  attach(src: Readable, pool?: ChunkPool): void {
    this.src = src;
    if (pool) {
      this.pool = pool;
      if (this.destroyed) pool.close();
    } else src.on('data', (c: Buffer) => this.onChunk(c));
    src.on('end', () => {
      this.srcEnded = true;
      this.pump();
    });
    src.on('error', (err) => this.destroy(err));
  }

  /** The process exited successfully: the output is complete once drained. */
  exitedOk(): void {
    this.exited = true;
    this.pump();
  }

  /** One chunk of a pooled reader (attach). */
  feed(c: Buffer): void {
    this.onChunk(c);
  }

  private onChunk(c: Buffer): void {
    if (this.destroyed) return;
    // Memory only while the file holds nothing unread, so the order stays
    // memory, then file.
    if (this.queued === this.readPos) {
      if (this.wanting && this.memBytes === 0) {
        this.wanting = this.push(c);
        return;
      }
      if (this.memBytes + c.length <= MEMORY_AHEAD && this.memory.used + c.length <= this.memory.max) {
        this.memory.add(c.length);
        this.mem.push(c);
        this.memBytes += c.length;
        return;
      }
    }
    const pos = this.queued;
    this.queued += c.length;
    this.charged += c.length;
    this.budget.add(c.length);
    if (this.budget.full && !this.stopWaiting) {
      this.src!.pause();
      this.stopWaiting = this.budget.onFree(() => {
        this.stopWaiting = undefined;
        if (!this.destroyed && !this.writesBehind) this.src!.resume();
      });
    }
    if (this.queued - this.written > MAX_UNWRITTEN && !this.writesBehind) {
      this.writesBehind = true;
      this.src!.pause();
    }
    this.chain = this.chain
      .then(async () => {
        if (this.destroyed) return;
        this.fh ??= await open(this.file, 'w+');
        await this.fh.write(c, 0, c.length, pos);
        ChunkPool.recycle(c);
        this.written = pos + c.length;
        if (this.writesBehind && this.queued - this.written <= MAX_UNWRITTEN / 2) {
          this.writesBehind = false;
          if (!this.stopWaiting) this.src!.resume();
        }
        this.pump();
      })
      .catch((err: Error) => this.destroy(err));
  }

  override _read(): void {
    this.wanting = true;
    this.pump();
  }

  private pump(): void {
    if (this.reading || this.destroyed) return;
    while (this.wanting && this.mem.length > 0) {
      const c = this.mem.shift()!;
      this.memBytes -= c.length;
      this.memory.sub(c.length);
      this.wanting = this.push(c);
    }
    if (this.mem.length > 0) return;
    if (this.readPos < this.written) {
      if (!this.wanting) return;
      this.reading = true;
      const n = Math.min(READ_SIZE, this.written - this.readPos);
      const buf = Buffer.allocUnsafe(n);
      this.fh!.read(buf, 0, n, this.readPos).then(
        ({ bytesRead }) => {
          this.reading = false;
          if (this.destroyed) return;
          if (bytesRead !== n) return this.destroy(new Error(`decode spool: short read (${bytesRead} of ${n})`));
          this.readPos += n;
          if (this.readPos === this.queued) this.empty();
          this.wanting = this.push(buf);
          this.pump();
        },
        (err: Error) => this.destroy(err),
      );
      return;
    }
    if (this.readPos === this.queued && this.srcEnded && this.exited) this.push(null);
  }

  /** The reader has caught up: the file's bytes go back to the budget. */
  private empty(): void {
    const freed = this.charged;
    this.queued = this.written = this.readPos = this.charged = 0;
    this.chain = this.chain.then(() => this.fh?.truncate(0)).catch((err: Error) => this.destroy(err));
    if (freed > 0) this.budget.sub(freed);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.stopWaiting?.();
    this.src?.destroy();
    this.pool?.close();
    this.onClose();
    if (this.memBytes > 0) this.memory.sub(this.memBytes);
    this.mem.length = 0;
    this.memBytes = 0;
    const freed = this.charged;
    this.charged = 0;
    if (freed > 0) this.budget.sub(freed);
    const cleanup = async () => {
      await this.chain.catch(() => {});
      await this.fh?.close().catch(() => {});
      await rm(this.file, { force: true });
    };
    cleanup().then(
      () => cb(err),
      () => cb(err),
    );
  }
}
