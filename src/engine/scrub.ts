import { createHash } from 'node:crypto';
import type { Backend } from '../storage/backend.js';
import { BlockHasher } from './blocks.js';
import { keyOfMetaBlob, referenceBlob, referenceRecord, META_SUFFIX } from './keys.js';
import { parseReferenceMeta, type ObjectMeta } from './meta.js';
import type { ObjectStore } from './types.js';

// Scrub: reads every object and reference back and checks it against its
// digests, without a running server (`deltaglider-proxy scrub`). Objects are
// read exactly as a GET reads them (whole-object SHA-256); their block
// digests are checked too, so a range that GET would refuse is found here.
// A damaged reference is reported with every object that depends on it.

export interface ScrubSelection {
  bucket?: string;
  prefix?: string;
}

export interface Damage {
  bucket: string;
  key: string;
  reason: string;
}

export interface ReferenceCheck {
  bucket: string;
  blob: string;
  ok: boolean;
  reason?: string;
  dependents: string[];
}

export interface ScrubReport {
  objects: number;
  bytes: number;
  damaged: Damage[];
  references: ReferenceCheck[];
}

export interface ScrubProgress {
  objects: number;
  bytes: number;
  damaged: number;
}

interface ScrubDeps {
  backend: Backend;
  store: Pick<ObjectStore, 'openObject'> & { findObject(bucket: string, key: string): Promise<ObjectMeta | null> };
}

export async function scrub(deps: ScrubDeps, sel: ScrubSelection, progress?: (p: ScrubProgress) => void, signal?: AbortSignal): Promise<ScrubReport> {
  const report: ScrubReport = { objects: 0, bytes: 0, damaged: [], references: [] };
  const buckets = sel.bucket ? [sel.bucket] : (await deps.backend.listBuckets()).map((b) => b.name);
  for (const bucket of buckets) {
    const refs = new Map<string, string[]>(); // reference blob -> dependent keys
    const expected = new Map<string, string>(); // reference blob -> recorded SHA-256
    const seen = new Set<string>();
    for await (const b of deps.backend.list(bucket, { prefix: sel.prefix ?? '', signal })) {
      const k = keyOfMetaBlob(b.name);
      if (!k || seen.has(k.key)) continue;
      // Keys with two sidecars (format 1 pairs) are checked once, as read.
      seen.add(k.key);
      const damage = await checkObject(deps, bucket, k.key, refs, expected);
      report.objects++;
      report.bytes += damage.bytes;
      if (damage.reason) report.damaged.push({ bucket, key: k.key, reason: damage.reason });
      progress?.({ objects: report.objects, bytes: report.bytes, damaged: report.damaged.length });
    }
    // The deltaspaces' current references, even those no object uses.
    const top = (sel.prefix ?? '').slice(0, (sel.prefix ?? '').lastIndexOf('/') + 1);
    for await (const b of deps.backend.list(bucket, { prefix: top, signal })) {
      const space = spaceOfName(b.name);
      if (b.name !== referenceRecord(space) && b.name !== referenceBlob(space) + META_SUFFIX) continue;
      const rec = await deps.backend.readSmall(bucket, b.name);
      if (!rec) continue;
      try {
        const meta = parseReferenceMeta(rec.body, referenceBlob(space));
        if (!refs.has(meta.blob)) refs.set(meta.blob, []);
        expected.set(meta.blob, meta.sha256);
      } catch (err) {
        report.references.push({ bucket, blob: b.name, ok: false, reason: `unreadable record: ${(err as Error).message}`, dependents: [] });
      }
    }
    for (const [blob, dependents] of refs) report.references.push({ bucket, blob, dependents, ...(await checkReference(deps.backend, bucket, blob, expected.get(blob))) });
  }
  return report;
}

function spaceOfName(name: string): string {
  const i = name.lastIndexOf('/');
  return i < 0 ? '' : name.slice(0, i);
}

async function checkObject(deps: ScrubDeps, bucket: string, key: string, refs: Map<string, string[]>, expected: Map<string, string>): Promise<{ bytes: number; reason?: string }> {
  let meta: ObjectMeta | null;
  try {
    meta = await deps.store.findObject(bucket, key);
  } catch (err) {
    return { bytes: 0, reason: `unreadable sidecar: ${(err as Error).message}` };
  }
  if (!meta) return { bytes: 0 };
  // Every form with a reference (delta, gzip) keeps it in use.
  for (const f of meta.stored) {
    const ref = (f as { reference?: { blob: string; sha256: string } }).reference;
    if (ref) {
      refs.set(ref.blob, [...(refs.get(ref.blob) ?? []), key]);
      expected.set(ref.blob, ref.sha256);
    }
  }
  const blocks = meta.blocks ? new BlockHasher(meta.blocks.size) : null;
  let bytes = 0;
  try {
    // Past the caches: a good decoded copy must not hide a damaged blob.
    const body = await deps.store.openObject(bucket, meta, undefined, undefined, { stored: true });
    for await (const chunk of body as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      blocks?.update(chunk);
    }
  } catch (err) {
    return { bytes, reason: (err as Error).message };
  }
  if (blocks && meta.blocks) {
    const want = meta.blocks.inline !== undefined ? Buffer.from(meta.blocks.inline, 'base64') : await readAll(deps.backend, bucket, meta.blocks.blob!).catch(() => null);
    if (!want || !blocks.digest().equals(want)) return { bytes, reason: 'block digests do not match the bytes (ranged reads would fail)' };
  }
  return { bytes };
}

async function readAll(backend: Backend, bucket: string, name: string): Promise<Buffer> {
  const { body } = await backend.getStream(bucket, name);
  const chunks: Buffer[] = [];
  for await (const c of body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

async function checkReference(backend: Backend, bucket: string, blob: string, want: string | undefined): Promise<{ ok: boolean; reason?: string }> {
  try {
    const { body } = await backend.getStream(bucket, blob);
    const hash = createHash('sha256');
    for await (const c of body as AsyncIterable<Buffer>) hash.update(c);
    const got = hash.digest('hex');
    if (want && got !== want) return { ok: false, reason: `SHA-256 ${got} does not match the recorded ${want}` };
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}
