import { EventEmitter } from 'node:events';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { CHUNK_BUFFER, ChunkPool } from './chunk-pool.js';
import { tempPath } from './spool.js';

// Decoded delta and gzip objects on local disk, for ranged and full reads.
//
// xdelta3 decodes from the first byte, so serving a range of a delta object
// means decoding everything before it. aws-cli, boto3 and rclone download
// large objects as many parallel ranged GETs: decoding from the start for
// each would cost O(parts × size); and a fleet of CI runners fetching the
// latest release would run one decode per runner. Instead a ranged read of
// a version, or its second whole read (wants(): a first whole read decodes
// straight to its client), starts one decode into a file here, and every
// later read of that version reads the file as it grows (waiting for the
// bytes it needs), then from the file while it stays cached. The decode runs
// at xdelta3's speed, not the first client's, so its codec slot is released
// early. Entries are keyed by the decoded content (the caller passes SHA-256
// and size, so a key cannot go stale), bounded in bytes on disk
// (decoded_cache_mb), and removed when evicted and no reader holds them.
// What is read from here is verified by the caller like any read:
// whole-object SHA-256 or block CRC-32.

/** The most a reader reads from a decoded file at once. */
const READ_BYTES = 1 << 20;

interface Entry {
  path: string;
  size: number;
  written: number;
  /** Bytes the decoder has produced (written, or on their way to the file). */
  received: number;
  done: boolean;
  error?: Error;
  readers: number;
  evicted: boolean;
  events: EventEmitter;
}

export class DecodedCache {
  private readonly lru: LRUCache<string, Entry>;
  /**
   * Versions read whole once and not kept (see wants()). Ids only: a few
   * thousand short strings.
   */
  private readonly seen = new LRUCache<string, true>({ max: 4096 });
  /** Made on first use: engines built without init() (the migrate command) read through here too. */
  private made?: Promise<unknown>;

  constructor(
    private readonly dir: string,
    readonly maxBytes: number,
  ) {
    this.lru = new LRUCache<string, Entry>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (e) => Math.max(1, e.size),
      dispose: (e) => {
        e.evicted = true;
        if (e.readers === 0) void fsp.rm(e.path, { force: true });
      },
    });
  }

  /** Whether an object of this size can be cached at all. */
  fits(size: number): boolean {
    return size > 0 && size <= this.maxBytes;
  }

  /**
   * Whether a read of `id` should go through here. Ranged reads always do
   * (each would decode from the start otherwise), and so does any read of
   * a version that is cached or being decoded. A whole read of a version
   * nobody has read goes past the cache the first time, unless `always`:
   * a one-off GET (a restore, a single download) then costs its decode and
   * no copy on disk, and the second whole read within the last few thousand
   * versions read starts the copy that later readers share. Measured
   * (bench/delta-get.ts, 100 MiB): writing the copy took a first GET from
   * 0.24-0.3 s to 0.35-0.47 s on two cores.
   */
  wants(id: string, size: number, whole: boolean, always = false): boolean {
    if (!this.fits(size)) return false;
    // Kept in `seen` once there: parallel whole reads that arrive before
    // the entry exists all go through the cache and share its decode.
    if (!whole || always || this.lru.has(id) || this.seen.get(id)) return true;
    this.seen.set(id, true);
    return false;
  }

  /**
   * Bytes [from, to] of the decoded object `id`, starting its decode with
   * `decode` when it is neither cached nor being decoded. `recycle`: the
   * consumer hands back each chunk once written (./chunk-pool.ts), so the
   * file is read into recycled buffers.
   */
  async range(id: string, size: number, decode: () => Promise<Readable>, from: number, to: number, recycle = false): Promise<Readable> {
    let e = this.lru.get(id);
    if (!e || e.error) {
      await (this.made ??= fsp.mkdir(this.dir, { recursive: true }));
      e = this.lru.get(id);
    }
    if (!e || e.error) {
      // readers: 1 holds the file for this caller until its reader exists,
      // so an eviction meanwhile cannot remove it under the fill.
      e = { path: tempPath(this.dir, 'decoded'), size, written: 0, received: 0, done: false, readers: 1, evicted: false, events: new EventEmitter() };
      e.events.setMaxListeners(0);
      this.lru.set(id, e);
      let src: Readable;
      try {
        src = await decode();
      } catch (err) {
        // Readers that joined meanwhile wait on this entry: wake them.
        e.readers--;
        e.error = err as Error;
        e.events.emit('progress');
        if (this.lru.peek(id) === e) this.lru.delete(id);
        throw err;
      }
      this.fill(e, src);
      e.readers--;
    }
    return this.reader(e, from, to, recycle ? new ChunkPool(READ_BYTES) : undefined);
  }

  private fill(e: Entry, src: Readable): void {
    // A deep buffer: the decoder is paused only when the disk falls behind
    // (fs streams default to 16 KiB, which paused it at every 64 KiB chunk).
    const out = createWriteStream(e.path, { highWaterMark: 8 << 20 });
    const fail = (err: Error) => {
      if (e.error || e.done) return;
      e.error = err;
      src.destroy();
      out.destroy();
      e.events.emit('progress');
      this.lru.forEach((v, k) => {
        if (v === e) this.lru.delete(k);
      });
    };
    src.on('error', fail);
    out.on('error', fail);
    // Evicted while still being written, and no one reading: the file goes
    // once the fill lets go of it.
    out.on('close', () => {
      if (e.evicted && e.readers === 0) void fsp.rm(e.path, { force: true });
    });
    // Progress counts bytes that reached the file (each write's callback,
    // in order), so a reader never reads past what is written, and wakes as
    // soon as there is something new for it.
    src.on('data', (chunk: Buffer) => {
      // Readers that have read everything the decoder produced so far take
      // a copy of the next chunk from here, before it is on disk (see
      // reader()). A copy: the chunk may be a recycled buffer
      // (./chunk-pool.ts), handed back once the file has it.
      const start = e.received;
      e.received += chunk.length;
      e.events.emit('chunk', start, chunk);
      const wrote = (err?: Error | null) => {
        if (!err) ChunkPool.recycle(chunk);
        if (err || e.error) return;
        e.written += chunk.length;
        e.events.emit('progress');
      };
      if (!out.write(chunk, wrote)) src.pause();
    });
    out.on('drain', () => src.resume());
    src.on('end', () => {
      out.end(() => {
        if (e.error) return;
        if (e.written !== e.size) return fail(new Error(`decoded ${e.written} bytes, expected ${e.size}`));
        e.done = true;
        e.events.emit('progress');
      });
    });
  }

  private reader(e: Entry, from: number, to: number, pool?: ChunkPool): Readable {
    // Copies of the decoder's chunks, for a consumer that recycles (the decoder's are up to 256 KiB).
    const livePool = pool ? new ChunkPool(CHUNK_BUFFER) : undefined;
    e.readers++;
    let pos = from;
    let fh: fsp.FileHandle | undefined;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      e.readers--;
      if (e.evicted && e.readers === 0) void fsp.rm(e.path, { force: true });
    };
    const waitFor = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (e.error) return done(() => reject(e.error));
          if (e.written >= n || e.done) return done(resolve);
        };
        const done = (f: () => void) => {
          e.events.off('progress', check);
          f();
        };
        e.events.on('progress', check);
        check();
      });
    // Live: a reader that has everything the decoder produced so far takes
    // the next chunks as they come, from memory, while it keeps up (its
    // buffer has room); otherwise it reads the file. The first reader of a
    // decode thus gets the bytes with no write and read back between
    // (bench/delta-get.ts), and a slow one never holds the decoder back.
    let live = false;
    const onChunk = (start: number, chunk: Buffer) => {
      if (start !== pos) {
        // Not the next bytes (cannot happen: joined when nothing was in flight); the file has them.
        leaveLive();
        return fromFile(READ_BYTES);
      }
      const n = Math.min(chunk.length, to - pos + 1);
      // Copied, the chunk's buffer goes back to the decode once written.
      const piece = livePool ? livePool.copy(chunk, n) : Buffer.from(chunk.subarray(0, n));
      pos += piece.length;
      const more = stream.push(piece);
      if (pos > to) {
        leaveLive();
        stream.push(null);
      } else if (!more) leaveLive();
    };
    const onLiveProgress = () => {
      if (e.error) {
        leaveLive();
        stream.destroy(e.error);
      } else if (e.done && pos <= to) {
        // Ended without the bytes this reader needs: the file path reports it.
        leaveLive();
        fromFile(READ_BYTES);
      }
    };
    const leaveLive = () => {
      if (!live) return;
      live = false;
      e.events.off('chunk', onChunk);
      e.events.off('progress', onLiveProgress);
    };
    const fromFile = (want: number) =>
      void (async () => {
        try {
          if (pos > to) {
            stream.push(null);
            return;
          }
          // The first read sends whatever is there once anything is (the
          // first byte goes out as soon as the decoder has made it); later
          // ones wait for a whole chunk: reading the file 64 KiB at a time
          // as the decoder writes it cost 2.3x the decode itself.
          const full = Math.min(want, to - pos + 1, READ_BYTES);
          await waitFor(pos === from ? pos + 1 : pos + full);
          const len = Math.min(full, Math.max(1, e.written - pos));
          fh ??= await fsp.open(e.path, 'r');
          // A new 1 MiB buffer per read is 100 MiB outside V8's heap per
          // 100 MiB read, which sent V8 into a full collection every few
          // reads (the same storm as ./chunk-pool.ts describes).
          const buf = pool ? pool.take() : Buffer.allocUnsafe(len);
          const { bytesRead } = await fh.read(buf, 0, len, pos);
          if (bytesRead === 0) throw new Error('decoded file ended early');
          pos += bytesRead;
          stream.push(pool ? pool.chunk(buf, bytesRead) : bytesRead === len ? buf : buf.subarray(0, bytesRead));
        } catch (err) {
          stream.destroy(err as Error);
        }
      })();
    const stream: Readable = new Readable({
      highWaterMark: 1 << 20,
      read: (want) => {
        if (live) return;
        if (pos <= to && pos >= e.written && pos === e.received && !e.done && !e.error) {
          live = true;
          e.events.on('chunk', onChunk);
          e.events.on('progress', onLiveProgress);
          return;
        }
        fromFile(want);
      },
      destroy: (err, cb) => {
        leaveLive();
        release();
        pool?.close();
        livePool?.close();
        const h = fh;
        fh = undefined;
        if (h) h.close().then(() => cb(err), () => cb(err));
        else cb(err);
      },
    });
    return stream;
  }

  /** Forgets a decode (one that failed verification); readers holding it finish first. */
  drop(id: string): void {
    this.lru.delete(id);
  }

  clear(): void {
    this.lru.clear();
    this.seen.clear();
  }
}
