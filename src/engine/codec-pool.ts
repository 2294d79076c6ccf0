import { BusyError } from '../errors.js';

// The budget every xdelta3 process runs under: at most `maxProcesses` at a
// time, and the sum of their memory charges (the -B window they allocate,
// see Codec.charge) within `memoryBytes`. Work beyond that waits in a FIFO
// queue of at most `queueLength` entries; past it the caller gets a
// BusyError, which the HTTP edge answers with 503 SlowDown + Retry-After.
//
// A job whose charge alone exceeds the memory budget still runs, but only
// when nothing else does, so that a large reference is slow, never refused.
//
// Slots taken by upload-time encoders are preemptible: such an encoder only
// overlaps the encode with a transfer of unknown speed, and the upload is
// encoded again after it arrives when it is stopped. So a queued job stops
// one of them rather than wait for a slow uploader.

export interface PoolOptions {
  maxProcesses: number;
  memoryBytes: number;
  queueLength: number;
}

export interface PoolStats {
  /** xdelta3 processes running now. */
  running: number;
  /** Jobs waiting for a slot. */
  queued: number;
  /** Memory charged to running processes, bytes. */
  memoryBytes: number;
  /** Jobs run to completion (or failure) since start. */
  runs: number;
  /** Wall time of those runs, milliseconds. */
  totalMs: number;
  /** Requests refused because the queue was full. */
  refused: number;
}

export interface Slot {
  /** Returns the slot to the pool; idempotent. */
  release(): void;
}

interface Waiter {
  charge: number;
  grant: (slot: Slot) => void;
}

interface Running {
  charge: number;
  preempt?: () => void;
  preempted: boolean;
}

/** Seconds a refused client is told to wait before retrying. */
export const RETRY_AFTER_SECONDS = 1;

export class CodecPool {
  private readonly running = new Set<Running>();
  private readonly queue: Waiter[] = [];
  private memory = 0;
  private runs = 0;
  private totalMs = 0;
  private refused = 0;

  constructor(readonly opts: PoolOptions) {}

  get stats(): PoolStats {
    return { running: this.running.size, queued: this.queue.length, memoryBytes: this.memory, runs: this.runs, totalMs: this.totalMs, refused: this.refused };
  }

  private fits(charge: number): boolean {
    if (this.running.size >= this.opts.maxProcesses) return false;
    return this.running.size === 0 || this.memory + charge <= this.opts.memoryBytes;
  }

  private take(charge: number, preempt?: () => void): Slot {
    const r: Running = { charge, preempt, preempted: false };
    this.running.add(r);
    this.memory += charge;
    const started = Date.now();
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.running.delete(r);
        this.memory -= charge;
        this.runs++;
        this.totalMs += Date.now() - started;
        this.pump();
      },
    };
  }

  /** A slot now, or null: for work that has a cheaper way out (upload-time encoding). */
  tryAcquire(charge: number, preempt?: () => void): Slot | null {
    if (this.queue.length > 0 || !this.fits(charge)) return null;
    return this.take(charge, preempt);
  }

  /**
   * Reserves a place synchronously (throws BusyError when the queue is
   * full, before the caller has committed to anything), then resolves when
   * the slot is granted. `signal` withdraws a waiting request.
   */
  acquire(charge: number, signal?: AbortSignal): Promise<Slot> {
    if (this.queue.length === 0 && this.fits(charge)) return Promise.resolve(this.take(charge));
    if (this.queue.length >= this.opts.queueLength) {
      this.refused++;
      throw new BusyError('codec queue full', RETRY_AFTER_SECONDS);
    }
    return new Promise<Slot>((resolve, reject) => {
      const w: Waiter = {
        charge,
        grant: (slot) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(slot);
        },
      };
      const onAbort = () => {
        const i = this.queue.indexOf(w);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal!.reason ?? new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(w);
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0].charge)) {
      const w = this.queue.shift()!;
      w.grant(this.take(w.charge));
    }
    if (this.queue.length === 0) return;
    // Someone waits: stop one upload-time encoder (its upload is encoded
    // after it arrives instead); its release pumps again.
    for (const r of this.running) {
      if (r.preempt && !r.preempted) {
        r.preempted = true;
        r.preempt();
        return;
      }
    }
  }
}
