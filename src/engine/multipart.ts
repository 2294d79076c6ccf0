import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { S3Error } from '../errors.js';
import { mapLimit, type Logger } from '../log.js';
import type { Backend } from '../storage/backend.js';
import { BlockHasher } from './blocks.js';
import { checkKey, newBlobId } from './keys.js';
import type { ObjectMeta } from './meta.js';
import { tempPath, type Spooled } from './spool.js';
import type { ObjectAttributes, ObjectStore } from './types.js';
import { IntegrityError } from './verify.js';

// Multipart uploads. Their state lives in the backend, in the pseudo-bucket
// UPLOADS (a bucket name cannot start with '.', so it never meets a user
// bucket or a listing): any instance sharing the backend can continue an
// upload, and an upload survives a restart.
//
//   .uploads/<bucket>/<uploadId>/upload.json            key, attributes, created
//   .uploads/<bucket>/<uploadId>/part-00001.<id>.bin    part bytes (immutable, format 2)
//   .uploads/<bucket>/<uploadId>/part-00001.json        size, MD5 (ETag), checksums, blob
//   .uploads/_completed/<bucket>/<uploadId>.json        a completed upload's result (retries)
//
// A part upload writes a new blob and then its record, which names it; a
// re-upload of the part replaces only the record. Complete resolves each
// record once and reads exactly the blob it names, checking the part's MD5 as
// it goes, so the object holds the part versions whose ETags the client
// gave. It concatenates them into one spooled file, hashing as it goes, and
// stores the result through the engine like a PUT: deltas apply.

export const UPLOADS = '.uploads';
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PARTS = 10000;

export interface UploadRecord {
  key: string;
  created: string;
  attrs: Omit<ObjectAttributes, 'checksums'>;
}

export interface PartRecord {
  number: number;
  size: number;
  md5: string;
  created: string;
  checksums: Record<string, string>;
  /** The part's blob (format 2); `part-NNNNN` for parts written by the first release. */
  blob?: string;
}

/** What a completed upload answered, for a retried Complete (kept COMPLETED_TTL_MS). */
export interface CompletedRecord {
  key: string;
  etag: string;
  completed: string;
  meta: Pick<ObjectMeta, 'etag' | 'kind' | 'stored_size' | 'checksums'>;
}

/**
 * How long a retried CompleteMultipartUpload of a completed upload answers
 * with the first result. AWS does answer such retries with 200 (the SDKs and
 * aws-cli retry a Complete whose response was lost), for a while.
 */
export const COMPLETED_TTL_MS = 3600_000;
// '_' cannot start a bucket name, so this never meets an upload's directory.
const COMPLETED = '_completed';

const pad = (n: number) => String(n).padStart(5, '0');

export class Multipart {
  constructor(
    private readonly backend: Backend,
    private readonly engine: ObjectStore,
    private readonly log: Logger,
  ) {}

  private dir(bucket: string, id: string): string {
    return `${bucket}/${id}/`;
  }

  async create(bucket: string, key: string, attrs: UploadRecord['attrs']): Promise<string> {
    checkKey(key);
    await this.engine.headBucket(bucket);
    this.engine.checkUpload(bucket, key, attrs.userMetadata);
    const id = randomBytes(16).toString('hex');
    const rec: UploadRecord = { key, created: new Date().toISOString(), attrs };
    await this.backend.putBytes(UPLOADS, `${this.dir(bucket, id)}upload.json`, Buffer.from(JSON.stringify(rec)));
    // A DeleteBucket (here or in another instance) removes the bucket, then
    // the uploads it lists. Racing it, either that listing saw this record,
    // or the bucket is gone by now: never an upload left over that a new
    // bucket of the same name would take on.
    if (!(await this.engine.bucketExistsNow(bucket))) {
      await this.removeAll(bucket, id);
      throw new S3Error('NoSuchBucket', undefined, { fields: { BucketName: bucket } });
    }
    return id;
  }

  /** The upload, or NoSuchUpload (also when it belongs to another key). */
  async get(bucket: string, key: string, id: string): Promise<UploadRecord> {
    const blob = /^[0-9a-f]{32}$/.test(id) ? await this.backend.readSmall(UPLOADS, `${this.dir(bucket, id)}upload.json`) : null;
    const rec = blob ? (JSON.parse(blob.body.toString('utf8')) as UploadRecord) : null;
    if (!rec || rec.key !== key) throw new S3Error('NoSuchUpload', undefined, { fields: { UploadId: id } });
    return rec;
  }

  static checkPartNumber(raw: string | null): number {
    const n = raw !== null && /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
    if (!(n >= 1 && n <= MAX_PARTS)) {
      throw new S3Error('InvalidArgument', `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`, { fields: { ArgumentName: 'partNumber', ArgumentValue: String(raw) } });
    }
    return n;
  }

  async putPart(bucket: string, key: string, id: string, n: number, body: Spooled, checksums: Record<string, string>): Promise<PartRecord> {
    await this.get(bucket, key, id);
    const base = `${this.dir(bucket, id)}part-${pad(n)}`;
    const blob = `${base}.${newBlobId()}.bin`;
    const part: PartRecord = { number: n, size: body.size, md5: body.md5, created: new Date().toISOString(), checksums, blob };
    await this.backend.putFile(UPLOADS, blob, body.path);
    // The record is the commit; the blob of a part it replaces stays until
    // the upload ends, for a Complete that resolved the older record.
    await this.backend.putBytes(UPLOADS, `${base}.json`, Buffer.from(JSON.stringify(part)));
    // An abort that ran meanwhile removed the upload: leave nothing behind.
    if (!(await this.backend.head(UPLOADS, `${this.dir(bucket, id)}upload.json`))) {
      await this.removeAll(bucket, id);
      throw new S3Error('NoSuchUpload', undefined, { fields: { UploadId: id } });
    }
    return part;
  }

  async parts(bucket: string, key: string, id: string): Promise<PartRecord[]> {
    await this.get(bucket, key, id);
    const names: string[] = [];
    for await (const b of this.backend.list(UPLOADS, { prefix: this.dir(bucket, id), shallow: true })) {
      if (/\/part-\d{5}\.json$/.test(b.name)) names.push(b.name);
    }
    const parts = await mapLimit(names, 16, async (n) => {
      const blob = await this.backend.readSmall(UPLOADS, n);
      return blob ? (JSON.parse(blob.body.toString('utf8')) as PartRecord) : null;
    });
    return parts.filter((p): p is PartRecord => p !== null).sort((a, b) => a.number - b.number);
  }

  /**
   * Validates the client's part list (CompleteMultipartUpload reference:
   * InvalidPartOrder, InvalidPart, EntityTooSmall), assembles the parts and
   * stores the object.
   */
  async complete(
    bucket: string,
    key: string,
    id: string,
    requested: { number: number; etag: string }[],
    maxSize: number,
  ): Promise<ObjectMeta | CompletedRecord['meta']> {
    let rec: UploadRecord;
    try {
      rec = await this.get(bucket, key, id);
    } catch (err) {
      // A retry of a Complete that succeeded: the same answer, and nothing
      // written, so a retry never undoes a later overwrite.
      const done = await this.completed(bucket, key, id);
      if (done) return done.meta;
      throw err;
    }
    if (requested.length === 0) throw new S3Error('MalformedXML', 'You must specify at least one part.');
    const stored = new Map((await this.parts(bucket, key, id)).map((p) => [p.number, p]));
    const chosen: PartRecord[] = [];
    let prev = 0;
    for (const r of requested) {
      if (r.number <= prev) throw new S3Error('InvalidPartOrder', undefined, { fields: { UploadId: id } });
      prev = r.number;
      const p = stored.get(r.number);
      if (!p || p.md5 !== r.etag.replace(/^"|"$/g, '').toLowerCase()) {
        throw new S3Error('InvalidPart', undefined, { fields: { UploadId: id, PartNumber: String(r.number), ETag: r.etag } });
      }
      chosen.push(p);
    }
    chosen.forEach((p, i) => {
      if (i < chosen.length - 1 && p.size < MIN_PART_SIZE) {
        throw new S3Error('EntityTooSmall', undefined, { fields: { ProposedSize: String(p.size), MinSizeAllowed: String(MIN_PART_SIZE), PartNumber: String(p.number) } });
      }
    });
    const total = chosen.reduce((n, p) => n + p.size, 0);
    if (total > maxSize) throw new S3Error('EntityTooLarge', undefined, { fields: { ProposedSize: String(total), MaxSizeAllowed: String(maxSize) } });
    const body = await this.assemble(bucket, id, chosen);
    try {
      // S3's multipart ETag: MD5 of the concatenated binary part MD5s, "-N".
      const etag = `${createHash('md5').update(Buffer.concat(chosen.map((p) => Buffer.from(p.md5, 'hex')))).digest('hex')}-${chosen.length}`;
      const meta = await this.engine.putObject({
        bucket,
        key,
        body,
        ...rec.attrs,
        checksums: {},
        etag,
        parts: chosen.length,
        partSizes: chosen.map((p) => p.size),
      });
      const done: CompletedRecord = { key, etag, completed: new Date().toISOString(), meta: { etag: meta.etag, kind: meta.kind, stored_size: meta.stored_size, checksums: meta.checksums } };
      await this.backend.putBytes(UPLOADS, `${COMPLETED}/${bucket}/${id}.json`, Buffer.from(JSON.stringify(done)));
      await this.removeAll(bucket, id);
      return meta;
    } finally {
      await body.dispose();
    }
  }

  /** The record of a completed upload of `key`, while it is kept. */
  async completed(bucket: string, key: string, id: string): Promise<CompletedRecord | null> {
    if (!/^[0-9a-f]{32}$/.test(id)) return null;
    const blob = await this.backend.readSmall(UPLOADS, `${COMPLETED}/${bucket}/${id}.json`);
    if (!blob) return null;
    const rec = JSON.parse(blob.body.toString('utf8')) as CompletedRecord;
    if (rec.key !== key || Date.now() - Date.parse(rec.completed) > COMPLETED_TTL_MS) return null;
    return rec;
  }

  /** Streams the parts, in order, into one spooled file with its digests. */
  private async assemble(bucket: string, id: string, parts: PartRecord[]): Promise<Spooled> {
    const file = tempPath(this.engine.tmpDir, 'assemble');
    const sha = createHash('sha256');
    const md5 = createHash('md5');
    const blocks = new BlockHasher();
    let size = 0;
    const out = createWriteStream(file, { highWaterMark: 1 << 20 });
    const failed = new Promise<never>((_, reject) => out.once('error', reject));
    failed.catch(() => {});
    try {
      for (const p of parts) {
        const name = p.blob ?? `${this.dir(bucket, id)}part-${pad(p.number)}`;
        const { body } = await this.backend.getStream(UPLOADS, name);
        const partMd5 = createHash('md5');
        let partSize = 0;
        for await (const chunk of body as AsyncIterable<Buffer>) {
          sha.update(chunk);
          md5.update(chunk);
          partMd5.update(chunk);
          blocks.update(chunk);
          size += chunk.length;
          partSize += chunk.length;
          if (!out.write(chunk)) await Promise.race([new Promise<void>((r) => out.once('drain', () => r())), failed]);
        }
        // Bit rot in a stored part, or a part that is not the one named.
        if (partSize !== p.size || partMd5.digest('hex') !== p.md5) throw new IntegrityError(`upload ${id}: part ${p.number} does not match its recorded size and MD5`);
      }
      await Promise.race([new Promise<void>((resolve) => out.end(() => resolve())), failed]);
    } catch (err) {
      out.destroy();
      await rm(file, { force: true });
      throw err;
    }
    return { path: file, size, sha256: sha.digest('hex'), md5: md5.digest('hex'), blocks: blocks.digest(), extra: {}, dispose: () => rm(file, { force: true }) };
  }

  async abort(bucket: string, key: string, id: string): Promise<void> {
    await this.get(bucket, key, id);
    await this.removeAll(bucket, id);
  }

  /** Record first, so that no one can add a part while the rest goes. */
  private async removeAll(bucket: string, id: string): Promise<void> {
    const dir = this.dir(bucket, id);
    await this.backend.delete(UPLOADS, `${dir}upload.json`);
    const names: string[] = [];
    for await (const b of this.backend.list(UPLOADS, { prefix: dir })) names.push(b.name);
    await mapLimit(names, 16, (n) => this.backend.delete(UPLOADS, n));
  }

  /** The ids of the uploads (records or parts) stored under a bucket's name. */
  async uploadIdsOf(bucket: string): Promise<Set<string>> {
    const ids = new Set<string>();
    for await (const b of this.backend.list(UPLOADS, { prefix: `${bucket}/` })) {
      const m = /^[^/]+\/([0-9a-f]{32})\//.exec(b.name);
      if (m) ids.add(m[1]);
    }
    return ids;
  }

  /**
   * Removes the uploads of a bucket that is gone (DeleteBucket, after the
   * bucket), or with `only`, those of the ids listed before a new bucket of
   * that name was made: uploads an earlier bucket left behind (a DeleteBucket
   * that crashed between its two steps, say). The order of the backend's own
   * operations decides, not a clock, so instances with skewed clocks agree:
   * an upload listed before the bucket existed was begun for the one before
   * it. One begun since is not in the list and stays.
   */
  async removeUploadsOf(bucket: string, only?: Set<string>): Promise<void> {
    for (const id of only ?? (await this.uploadIdsOf(bucket))) await this.removeAll(bucket, id);
  }

  /** Uploads in progress in a bucket, sorted by key then initiation. */
  async list(bucket: string): Promise<{ id: string; rec: UploadRecord }[]> {
    await this.engine.headBucket(bucket);
    const ids: string[] = [];
    for await (const b of this.backend.list(UPLOADS, { prefix: `${bucket}/` })) {
      const m = /^[^/]+\/([0-9a-f]{32})\/upload\.json$/.exec(b.name);
      if (m) ids.push(m[1]);
    }
    const out = await mapLimit(ids, 16, async (id) => {
      const blob = await this.backend.readSmall(UPLOADS, `${this.dir(bucket, id)}upload.json`);
      return blob ? { id, rec: JSON.parse(blob.body.toString('utf8')) as UploadRecord } : null;
    });
    return out
      .filter((u): u is { id: string; rec: UploadRecord } => u !== null)
      .sort((a, b) => (a.rec.key < b.rec.key ? -1 : a.rec.key > b.rec.key ? 1 : a.rec.created < b.rec.created ? -1 : 1));
  }

  /** Removes uploads older than `maxAgeMs` (abandoned), and their parts. */
  async sweep(maxAgeMs: number): Promise<number> {
    const cutoff = Date.now() - maxAgeMs;
    let removed = 0;
    const seen = new Map<string, { bucket: string; id: string; old: boolean; hasRecord: boolean }>();
    for await (const b of this.backend.list(UPLOADS)) {
      if (b.name.startsWith(`${COMPLETED}/`)) {
        if (Date.now() - b.lastModified.getTime() > COMPLETED_TTL_MS) await this.backend.delete(UPLOADS, b.name);
        continue;
      }
      const m = /^([^/]+)\/([0-9a-f]{32})\/(.+)$/.exec(b.name);
      if (!m) continue;
      const k = `${m[1]}/${m[2]}`;
      const e = seen.get(k) ?? { bucket: m[1], id: m[2], old: true, hasRecord: false };
      if (b.lastModified.getTime() > cutoff) e.old = false;
      if (m[3] === 'upload.json') e.hasRecord = true;
      seen.set(k, e);
    }
    for (const e of seen.values()) {
      if (!e.old) continue;
      await this.removeAll(e.bucket, e.id);
      removed++;
    }
    if (removed) this.log.info({ removed }, 'removed abandoned multipart uploads');
    return removed;
  }
}
