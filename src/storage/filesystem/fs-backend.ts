import { closeSync, createReadStream, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { AlreadyExistsError, NotEmptyError, NotFoundError, PreconditionError } from '../../errors.js';
import { KeyedRwLock } from '../../locks.js';
import type { Backend, BlobInfo, BucketInfo, DeleteOptions, GetOptions, ListOptions, PutOptions, SmallBlob, SortedListOptions } from '../backend.js';
import { INTERNAL_PREFIX, decodeComponents, encodeName, encodePrefixDir } from './names.js';
import { SortedLister, type SortedListerOptions } from './sorted-list.js';

const BUCKET_RECORD = `${INTERNAL_PREFIX}bucket.json`;
/** Index files of big directories (./sorted-list.ts): derived data, cleared at start-up. Not a bucket: names starting with '.' never are. */
const LIST_INDEX_DIR = '.list-index';

/**
 * Every write renames a new file into place, so (inode, mtime) identifies a
 * version. Conditional operations compare it before acting: not atomic
 * across processes, which is why one data directory serves one proxy
 * instance (whose engine serialises writes of a key).
 */
function etagOf(st: { ino: bigint; mtimeNs: bigint; size: bigint }): string {
  return `${st.ino.toString(36)}-${st.mtimeNs.toString(36)}-${st.size.toString(36)}`;
}

async function currentEtag(p: string): Promise<string | null> {
  try {
    return etagOf(await fsp.stat(p, { bigint: true }));
  } catch (err) {
    if (isCode(err, 'ENOENT', 'ENOTDIR')) return null;
    throw err;
  }
}

function isCode(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

/**
 * Buckets are directories under the data directory; blobs are files below
 * them, named by ./names.ts. Writes go to a temp file in the target directory,
 * are fsynced, then renamed (or linked, for create-only writes) into place.
 */
export interface FilesystemOptions {
  /** Called after each fsync, file or directory (tests check the order of durability). */
  onSync?: (path: string, what: 'file' | 'dir') => void;
  /** Sizes of the sorted listing's caches and index files (tests make them tiny). */
  sortedList?: Omit<SortedListerOptions, 'indexDir'>;
}

export class FilesystemBackend implements Backend {
  readonly kind = 'filesystem' as const;
  readonly shared = false;
  readonly root: string;
  private readonly rootSlash: string;
  private readonly sorted: SortedLister;
  /** Backend.generation: bumped around every commit, delete and bucket removal. */
  private changes = 0;

  constructor(
    root: string,
    private readonly fsOpts: FilesystemOptions = {},
  ) {
    this.root = path.resolve(root);
    this.rootSlash = this.root.endsWith('/') ? this.root : `${this.root}/`;
    this.sorted = new SortedLister({ ...fsOpts.sortedList, indexDir: path.join(this.root, LIST_INDEX_DIR) });
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.root, { recursive: true });
    await fsp.access(this.root, fsp.constants.W_OK);
    await this.removeStaleTemps(this.root, 0);
    await this.sorted.init();
  }

  async close(): Promise<void> {
    this.sorted.close();
  }

  private bucketDir(bucket: string): string {
    // Bucket names are validated by the engine (S3 naming rules: no '/', no
    // leading '.'), so they are safe as one path component.
    return path.join(this.root, bucket);
  }

  private blobPath(bucket: string, name: string): string {
    // Joined by hand: every component is one already safe (a checked bucket
    // name, then ./names.ts segments: never empty, '.' or '..', no '/'),
    // and path.join's normalisation was most of a HEAD's path building.
    if (bucket === '' || bucket === '.' || bucket === '..' || bucket.includes('/')) return path.join(this.bucketDir(bucket), ...encodeName(name));
    return `${this.rootSlash}${bucket}/${encodeName(name).join('/')}`;
  }

  localPath(bucket: string, name: string): string {
    return this.blobPath(bucket, name);
  }

  generation(): number {
    return this.changes;
  }

  quickEtag(bucket: string, name: string): string | null {
    // Synchronous, as readSmall: one stat of a warm inode is microseconds.
    const st = statSync(this.blobPath(bucket, name), { bigint: true, throwIfNoEntry: false });
    return st?.isFile() ? etagOf(st) : null;
  }

  async listBuckets(): Promise<BucketInfo[]> {
    const out: BucketInfo[] = [];
    for (const ent of await fsp.readdir(this.root, { withFileTypes: true })) {
      if (!ent.isDirectory() || ent.name.startsWith('.')) continue;
      const info = await this.headBucket(ent.name);
      if (info) out.push(info);
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async headBucket(bucket: string): Promise<BucketInfo | null> {
    const dir = this.bucketDir(bucket);
    try {
      const rec = JSON.parse(await fsp.readFile(path.join(dir, BUCKET_RECORD), 'utf8')) as { created: string; location?: string };
      return { name: bucket, created: new Date(rec.created), ...(rec.location ? { location: rec.location } : {}) };
    } catch (err) {
      if (!isCode(err, 'ENOENT', 'ENOTDIR') && !(err instanceof SyntaxError)) throw err;
    }
    // A directory created by hand (no record) is still a bucket.
    try {
      const st = await fsp.stat(dir);
      return st.isDirectory() ? { name: bucket, created: st.birthtime.getTime() ? st.birthtime : st.mtime } : null;
    } catch (err) {
      if (isCode(err, 'ENOENT', 'ENOTDIR')) return null;
      throw err;
    }
  }

  async createBucket(bucket: string, opts: { location?: string } = {}): Promise<void> {
    const dir = this.bucketDir(bucket);
    try {
      await fsp.mkdir(dir);
    } catch (err) {
      if (isCode(err, 'EEXIST')) throw new AlreadyExistsError(bucket);
      throw err;
    }
    await this.writeAtomic(dir, BUCKET_RECORD, JSON.stringify({ created: new Date().toISOString(), ...(opts.location ? { location: opts.location } : {}) }));
  }

  async deleteBucket(bucket: string, live?: (name: string) => boolean): Promise<void> {
    // One instance per data dir: its engine holds the bucket's lock against
    // writes, so this last look and the removal cannot be overtaken.
    if (live) for await (const b of this.list(bucket)) if (live(b.name)) throw new NotEmptyError(bucket);
    this.changes++;
    try {
      await fsp.rm(this.bucketDir(bucket), { recursive: true, force: true });
    } finally {
      this.changes++;
    }
  }

  /**
   * Commits to one path one at a time. A conditional write checks the
   * current version and then renames: two steps, with awaits between them,
   * so without this another commit could land in between and be overwritten
   * although its own check passed (a PUT's new sidecar replaced by a
   * compaction's swap of the version before it). One instance serves a data
   * directory, so a lock in this process makes the check and the commit one
   * step, as If-Match is on S3.
   */
  private readonly commits = new KeyedRwLock();

  private async serial<T>(p: string, fn: () => Promise<T>): Promise<T> {
    const release = await this.commits.write(p);
    // Every commit and delete passes here: generation() changes before it
    // can be seen on disk and again once it is done.
    this.changes++;
    try {
      return await fn();
    } finally {
      this.changes++;
      release();
    }
  }

  private async writeAtomic(dir: string, base: string, body: Buffer | string | { file: string }, opts: PutOptions = {}): Promise<string> {
    const final = path.join(dir, base);
    const createOnly = opts.ifNoneMatch === true;
    for (let attempt = 0; ; attempt++) {
      const tmp = path.join(dir, `${INTERNAL_PREFIX}tmp-${randomBytes(8).toString('hex')}`);
      try {
        await fsp.mkdir(dir, { recursive: true });
        if (typeof body === 'object' && 'file' in body) await fsp.copyFile(body.file, tmp);
        else await fsp.writeFile(tmp, body);
        const fh = await fsp.open(tmp, 'r+');
        let etag: string;
        try {
          await fh.sync();
          this.fsOpts.onSync?.(final, 'file');
          etag = etagOf(await fh.stat({ bigint: true }));
        } finally {
          await fh.close();
        }
        await this.serial(final, async () => {
          if (opts.ifMatch !== undefined && (await currentEtag(final)) !== opts.ifMatch) throw new PreconditionError(final);
          if (createOnly) {
            // link() fails with EEXIST atomically: the create-only commit.
            try {
              await fsp.link(tmp, final);
            } catch (err) {
              if (isCode(err, 'EEXIST')) throw new AlreadyExistsError(final);
              throw err;
            }
            await fsp.unlink(tmp);
          } else {
            await fsp.rename(tmp, final);
          }
        });
        await this.syncDir(dir);
        return etag;
      } catch (err) {
        await fsp.rm(tmp, { force: true }).catch(() => {});
        // A concurrent delete may have pruned the empty directory between our
        // mkdir and the write: make it again.
        if (isCode(err, 'ENOENT') && attempt < 5) continue;
        throw err;
      }
    }
  }

  private async syncDir(dir: string): Promise<void> {
    const fh = await fsp.open(dir, 'r');
    try {
      await fh.sync();
      this.fsOpts.onSync?.(dir, 'dir');
    } catch {
      // Some filesystems refuse fsync on directories; rename is still atomic.
    } finally {
      await fh.close();
    }
  }

  async putFile(bucket: string, name: string, file: string, opts: PutOptions = {}): Promise<string> {
    const p = this.blobPath(bucket, name);
    return this.writeAtomic(path.dirname(p), path.basename(p), { file }, opts);
  }

  async putBytes(bucket: string, name: string, body: Buffer, opts: PutOptions = {}): Promise<string> {
    const p = this.blobPath(bucket, name);
    return this.writeAtomic(path.dirname(p), path.basename(p), body, opts);
  }

  async getStream(bucket: string, name: string, opts: GetOptions = {}): Promise<{ body: Readable; size: number }> {
    const p = this.blobPath(bucket, name);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(p, 'r');
    } catch (err) {
      if (isCode(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) throw new NotFoundError(name);
      throw err;
    }
    const { size } = await fh.stat();
    // The stream owns the handle: it closes it when it ends or is destroyed,
    // so an open file never outlives the response that reads it.
    const body = createReadStream('', {
      fd: fh,
      start: opts.range?.start,
      end: opts.range?.end,
      signal: opts.signal,
      highWaterMark: 256 * 1024,
    });
    return { body, size };
  }

  async readSmall(bucket: string, name: string): Promise<SmallBlob | null> {
    // Synchronous: sidecars are a few KB, and one read is four trips through
    // libuv's thread pool otherwise (open, fstat, read, close), which cost
    // more than the syscalls on a warm page cache (every GET and listed key
    // reads one; measured with --cpu-prof, bench/listing.ts).
    let fd: number;
    try {
      fd = openSync(this.blobPath(bucket, name), 'r');
    } catch (err) {
      if (isCode(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) return null;
      throw err;
    }
    try {
      const st = fstatSync(fd, { bigint: true });
      if (st.isDirectory()) return null;
      return { body: readFileSync(fd), etag: etagOf(st) };
    } finally {
      closeSync(fd);
    }
  }

  async head(bucket: string, name: string): Promise<BlobInfo | null> {
    try {
      const st = await fsp.stat(this.blobPath(bucket, name), { bigint: true });
      return st.isFile() ? { name, size: Number(st.size), lastModified: new Date(Number(st.mtimeMs)), etag: etagOf(st) } : null;
    } catch (err) {
      if (isCode(err, 'ENOENT', 'ENOTDIR')) return null;
      throw err;
    }
  }

  async delete(bucket: string, name: string, opts: DeleteOptions = {}): Promise<void> {
    const p = this.blobPath(bucket, name);
    const removed = await this.serial(p, async () => {
      if (opts.ifMatch !== undefined) {
        const cur = await currentEtag(p);
        if (cur === null) return false;
        if (cur !== opts.ifMatch) throw new PreconditionError(p);
      }
      try {
        await fsp.unlink(p);
        return true;
      } catch (err) {
        if (isCode(err, 'ENOENT', 'ENOTDIR')) return false;
        throw err;
      }
    });
    if (!removed) return;
    // Prune directories left empty, up to (not including) the bucket.
    const stop = this.bucketDir(bucket);
    for (let dir = path.dirname(p); dir.length > stop.length && dir.startsWith(stop); dir = path.dirname(dir)) {
      try {
        await fsp.rmdir(dir);
      } catch {
        break; // not empty (or already gone): stop climbing
      }
    }
  }

  async *list(bucket: string, opts: ListOptions = {}): AsyncIterable<BlobInfo> {
    const prefix = opts.prefix ?? '';
    const startComponents = encodePrefixDir(prefix);
    const startDir = path.join(this.bucketDir(bucket), ...startComponents);
    yield* this.walk(startDir, startComponents, prefix, opts);
  }

  /** In name order, from sorted directory reads cached by mtime (./sorted-list.ts). */
  async *listSorted(bucket: string, opts: SortedListOptions): AsyncIterable<BlobInfo> {
    const it = this.sorted.list(this.bucketDir(bucket), opts)[Symbol.asyncIterator]();
    // Returned early (a full page): the lister lets go of the directories it holds.
    try {
      yield* this.statSorted(it);
    } finally {
      await it.return?.();
    }
  }

  private async *statSorted(it: AsyncIterator<{ name: string; file: string }>): AsyncIterable<BlobInfo> {
    for (let done = false; !done; ) {
      const batch: { name: string; file: string }[] = [];
      while (batch.length < 64) {
        const n = await it.next();
        if (n.done) {
          done = true;
          break;
        }
        batch.push(n.value);
      }
      // Synchronous: a stat of a file whose directory was just read is a
      // few microseconds, far less than a trip through the thread pool.
      const stats = batch.map((e) => statSync(e.file, { bigint: true, throwIfNoEntry: false }));
      for (const [i, st] of stats.entries()) {
        // Gone since the directory was read: deleted while listing.
        if (st) yield { name: batch[i].name, size: Number(st.size), lastModified: new Date(Number(st.mtimeMs)), etag: etagOf(st) };
      }
    }
  }

  private async *walk(dir: string, components: string[], prefix: string, opts: ListOptions): AsyncIterable<BlobInfo> {
    // Streamed (opendir), not one readdir array: a million keys in one
    // prefix are 2M entries, 500 MB as an array (gc, usage, scrub, references).
    // Entries created or removed meanwhile may or may not be seen (readdir(3));
    // the others are seen once.
    let entries;
    try {
      entries = await fsp.opendir(dir, { bufferSize: 256 });
    } catch (err) {
      if (isCode(err, 'ENOENT', 'ENOTDIR')) return;
      throw err;
    }
    for await (const ent of entries) {
      opts.signal?.throwIfAborted();
      if (ent.name.startsWith(INTERNAL_PREFIX)) continue;
      const comps = [...components, ent.name];
      if (ent.isDirectory()) {
        // A continuation piece belongs to the same segment, so a shallow walk
        // still descends into it.
        if (opts.shallow && !ent.name.endsWith('%+')) continue;
        const partial = decodeComponents(ent.name.endsWith('%+') ? comps : [...comps, '']);
        if (partial === null) continue;
        // Skip subtrees that cannot hold a name with this prefix.
        if (!partial.startsWith(prefix) && !prefix.startsWith(partial)) continue;
        yield* this.walk(path.join(dir, ent.name), comps, prefix, opts);
      } else if (ent.isFile()) {
        const name = decodeComponents(comps);
        if (name === null || !name.startsWith(prefix)) continue;
        if (opts.shallow && name.slice(prefix.length).includes('/')) continue;
        let st;
        try {
          st = await fsp.stat(path.join(dir, ent.name), { bigint: true });
        } catch (err) {
          if (isCode(err, 'ENOENT')) continue; // deleted while listing
          throw err;
        }
        yield { name, size: Number(st.size), lastModified: new Date(Number(st.mtimeMs)), etag: etagOf(st) };
      }
    }
  }

  /** Removes temp files a crash left behind (at start-up). */
  private async removeStaleTemps(dir: string, depth: number): Promise<void> {
    // Streamed, not readdir: a directory of a million keys as one array of
    // entries took 500 MB of RSS at start-up (bench/listing.ts).
    let entries;
    try {
      entries = await fsp.opendir(dir, { bufferSize: 1024 });
    } catch {
      return;
    }
    for await (const ent of entries) {
      if (ent.isDirectory()) {
        // Internal dirs hold no %%tmp- files, except the pseudo-buckets of
        // multipart uploads and compaction work.
        if (depth === 0 && ent.name.startsWith('.') && ent.name !== '.uploads' && ent.name !== '.compact') continue;
        await this.removeStaleTemps(path.join(dir, ent.name), depth + 1);
      } else if (ent.name.startsWith(`${INTERNAL_PREFIX}tmp-`)) {
        await fsp.rm(path.join(dir, ent.name), { force: true });
      }
    }
  }
}
