import { access, open, rm, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { NotFoundError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Backend } from '../storage/backend.js';
import type { Codec } from './codec.js';
import { analyzeGzip, gzipSelfTest, isGzipCandidate, rebuildGzip, recipeProblem, type GzipRecipe } from './gzip/index.js';
import { GiveUp, inflateGzipFile } from './gzip/members.js';
import { inflateKnown } from './gzip/native-inflate.js';
import { GzipFormatError } from './gzip/reader.js';
import { objectBlob } from './keys.js';
import type { ReferenceRef, StoredForm } from './meta.js';
import type { RefHandle } from './refcache.js';
import type { References } from './references.js';
import { tempPath, type Spooled } from './spool.js';
import { largestSourceSegment } from './vcdiff.js';
import { IntegrityError } from './verify.js';

// The `gzip` stored form (issue 13; docs/storage-format.md, "gzip" and the stored
// forms table): a gzip upload kept as an xdelta3 delta of its *decompressed* bytes
// against the reference's decompressed bytes (the reference's own bytes when it is
// not gzip), plus the recipe that recompresses them byte for byte. Tried before the
// plain delta for gzip uploads; any failure falls back to it, so a stream that does
// not reproduce is stored exactly as before.

export interface GzipForm {
  kind: 'gzip';
  blob: string;
  size: number;
  etag: string;
  codec: 'xdelta3';
  /** The reference; `inflate` says whether the delta's source is its decompressed bytes. */
  reference: ReferenceRef & { inflate: boolean; raw_size?: number; raw_sha256?: string };
  /** The decompressed bytes the delta decodes to. */
  raw: { size: number; sha256: string };
  recipe: GzipRecipe;
  /** As for a plain delta (./meta.ts): the largest source segment of the delta's windows. */
  max_source_segment?: number;
}

export interface GzipOptions {
  /** false: never write the gzip form (reading it still works). */
  enabled: boolean;
  /** Largest decompressed size tried, bytes. */
  maxInflated: number;
  /** Largest decompressed/compressed ratio tried (decompression bombs). */
  maxRatio: number;
  /** Most time one upload may spend on the analysis, ms (see budgetFor). */
  budgetMs: number;
}

export const GZIP_DEFAULTS: GzipOptions = { enabled: true, maxInflated: 2 ** 30, maxRatio: 200, budgetMs: 60_000 };

/**
 * The wall-clock backstop for one analysis. The search itself is bounded by work (the
 * bytes it may deflate, a multiple of the decompressed size: ./gzip/analyze.ts), which
 * is the same on an idle and a busy machine; this only guards against a machine so
 * busy that even that takes too long. A stream that reproduces costs about 0.5 s of
 * CPU per compressed MiB at level 9 (bench/gzip-corpus.ts).
 */
export function budgetFor(size: number, max: number): number {
  return Math.min(max, 10_000 + (10_000 * size) / 2 ** 20);
}

export interface GzipDeps {
  backend: Backend;
  refs: References;
  codec: Codec;
  tmpDir: string;
  maxDeltaRatio: number;
  log: Logger;
}

export function isGzipForm(f: StoredForm): f is StoredForm & GzipForm {
  const g = f as Partial<GzipForm>;
  return (
    g.kind === 'gzip' && typeof g.blob === 'string' && Number.isSafeInteger(g.size) && g.codec === 'xdelta3' &&
    typeof g.reference?.blob === 'string' && typeof g.reference.sha256 === 'string' && typeof g.reference.inflate === 'boolean' &&
    Number.isSafeInteger(g.raw?.size) && typeof g.raw?.sha256 === 'string' && !!g.recipe && recipeProblem(g.recipe) === null
  );
}

async function firstBytes(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Inflates a gzip file into a temp file (capped); null when it is not gzip or over the caps. */
async function inflateToTemp(tmpDir: string, file: string, size: number, maxInflated: number, signal?: AbortSignal): Promise<{ path: string; size: number; sha256: string } | null> {
  const out = tempPath(tmpDir, 'gunzip');
  const gz = await open(file, 'r');
  const fh = await open(out, 'w');
  let ok = false;
  try {
    const p = await inflateGzipFile(gz, fh, { maxInflated, maxRatio: Infinity, maxMembers: Infinity, fileSize: size, deadline: Infinity, signal });
    ok = true;
    return { path: out, size: p.rawSize, sha256: p.rawSha256 };
  } catch (err) {
    // A client gone away stops the inflate (checked at every step); that is
    // not a reference that fails to inflate.
    signal?.throwIfAborted();
    if (err instanceof GiveUp || err instanceof GzipFormatError) return null;
    throw err;
  } finally {
    await fh.close();
    await gz.close();
    if (!ok) await rm(out, { force: true });
  }
}

export class GzipKind {
  /** Whether this instance writes the form: the start-up self-test passed and it is enabled. */
  writable = false;

  constructor(private readonly d: GzipDeps, private readonly opts: GzipOptions) {}

  /** The start-up self-test (./gzip/selftest.ts): refuses the kind, clearly, if pako drifted. */
  async init(): Promise<void> {
    const t = await gzipSelfTest();
    if (!t.ok) this.d.log.error({ reason: t.reason }, 'gzip stored form disabled: the pinned deflate no longer rebuilds its self-test stream');
    this.writable = t.ok && this.opts.enabled;
  }

  /**
   * Tries the gzip form for an upload whose reference is `ref`; null means "not this
   * form" (not gzip, not reproducible, over a cap or the budget, delta not worth it).
   */
  async store(bucket: string, key: string, body: Spooled, ref: ReferenceRef, id: string, signal?: AbortSignal): Promise<GzipForm | null> {
    if (!this.writable || !isGzipCandidate(key, await firstBytes(body.path, 3))) return null;
    const analysis = await analyzeGzip(body.path, {
      tmpDir: this.d.tmpDir,
      maxInflated: this.opts.maxInflated,
      maxRatio: this.opts.maxRatio,
      budgetMs: budgetFor(body.size, this.opts.budgetMs),
      signal,
      onGiveUp: (reason) => this.d.log.debug?.({ bucket, key, reason }, 'gzip form not used'),
    });
    if (!analysis) return null;
    let handle: RefHandle | undefined;
    let inflated: Awaited<ReturnType<typeof inflateToTemp>> = null;
    const out = tempPath(this.d.tmpDir, 'gzdelta');
    try {
      // Inside the try: the decompressed upload (analysis.rawFile) goes whatever fails.
      handle = await this.d.refs.open(bucket, ref, signal);
      inflated = (await firstBytes(handle.path, 3)).equals(Buffer.from([0x1f, 0x8b, 8]))
        ? await inflateToTemp(this.d.tmpDir, handle.path, handle.size, this.opts.maxInflated, signal)
        : null;
      const src = inflated ?? { path: handle.path, size: handle.size };
      // Stopped at the limit: not worth it (Codec.encode).
      if (!(await this.d.codec.encode(src.path, src.size, analysis.rawFile, out, signal, { limit: this.d.maxDeltaRatio * body.size }))) return null;
      const { size } = await stat(out);
      if (size / body.size >= this.d.maxDeltaRatio) return null;
      const blob = objectBlob(key, 'delta', id);
      const etag = await this.d.backend.putFile(bucket, blob, out);
      const segment = await largestSourceSegment(out);
      return {
        kind: 'gzip',
        blob,
        size,
        etag,
        codec: 'xdelta3',
        reference: { ...ref, inflate: !!inflated, ...(inflated ? { raw_size: inflated.size, raw_sha256: inflated.sha256 } : {}) },
        raw: { size: analysis.rawSize, sha256: analysis.rawSha256 },
        recipe: analysis.recipe,
        ...(segment === null ? {} : { max_source_segment: segment }),
      };
    } finally {
      handle?.release();
      await rm(out, { force: true });
      await rm(analysis.rawFile, { force: true });
      if (inflated) await rm(inflated.path, { force: true });
    }
  }

  /** The original gzip bytes of a gzip form, as a stream (verified by the caller). */
  async open(bucket: string, form: GzipForm, signal?: AbortSignal): Promise<Readable> {
    const handle = await this.d.refs.open(bucket, form.reference, signal);
    let inflated: Awaited<ReturnType<typeof inflateToTemp>> = null;
    const cleanup = async () => {
      handle.release();
      if (inflated) await rm(inflated.path, { force: true });
    };
    try {
      if (form.reference.inflate) {
        // Native zlib when the bytes to expect are recorded (./gzip/native-inflate.ts), else pako.
        const { raw_size: rawSize, raw_sha256: rawSha } = form.reference;
        const out = tempPath(this.d.tmpDir, 'gunzip');
        if (rawSize !== undefined && rawSha && (await inflateKnown(handle.path, out, rawSize, rawSha, signal))) {
          inflated = { path: out, size: rawSize, sha256: rawSha };
        } else inflated = await inflateToTemp(this.d.tmpDir, handle.path, handle.size, (rawSize ?? 0) + 1, signal);
        if (!inflated || (rawSha && inflated.sha256 !== rawSha)) {
          throw new IntegrityError(`${bucket}/${form.blob}: the reference no longer inflates to the bytes the delta was made against`);
        }
      }
      const src = inflated ?? { path: handle.path, size: handle.size };
      // As for a plain delta (./read.ts): a blob gone before the first byte
      // is NotFoundError, so the caller resolves the key again.
      const local = this.d.backend.localPath?.(bucket, form.blob);
      if (local) {
        await access(local).catch(() => {
          throw new NotFoundError(form.blob);
        });
      }
      const delta = local ?? (await this.d.backend.getStream(bucket, form.blob, { signal })).body;
      const segment = form.max_source_segment ?? (local ? ((await largestSourceSegment(local)) ?? undefined) : undefined);
      const raw = this.d.codec.decode(src.path, src.size, delta, signal, segment);
      const gz = rebuildGzip(raw, form.recipe);
      gz.once('close', () => void cleanup());
      return gz;
    } catch (err) {
      await cleanup();
      throw err;
    }
  }
}
