import path from 'node:path';
import { Readable } from 'node:stream';
import type { Test } from 'tap';
import { Engine } from '../../src/engine/engine.js';
import type { ByteRange } from '../../src/storage/backend.js';
import type { EngineOptions } from '../../src/engine/types.js';
import { FilesystemBackend } from '../../src/storage/filesystem/fs-backend.js';
import { tempDir } from './proxy.js';

// Engines built directly (no HTTP) for the engine-level tests: the options
// they share, and whole-buffer PUT and GET.

/** Engine options with scratch space below `dir`: xdelta3 -9, a 64 MiB reference cache, deltas tried for `.zip` and `.bin`. */
export function engineOptions(dir: string, over: Partial<EngineOptions> = {}): EngineOptions {
  return {
    tmpDir: path.join(dir, 'tmp'),
    cacheDir: path.join(dir, 'cache'),
    cacheBytes: 64 << 20,
    maxDeltaRatio: 0.5,
    deltaExtensions: ['.zip', '.bin'],
    codec: { binary: 'xdelta3', level: 9, secondary: 'default', maxWindow: 1 << 30 },
    toolVersion: 'test',
    maxDeltaObjectSize: 1 << 30,
    multipartMaxAgeMs: 3600_000,
    ...over,
  };
}

/** A fresh engine on the filesystem backend in a temp dir, with bucket `bkt`, closed at teardown. */
export async function testEngine(t: Test, over: Partial<EngineOptions> = {}): Promise<{ e: Engine; dir: string; data: string }> {
  const dir = await tempDir(t);
  const e = new Engine(new FilesystemBackend(path.join(dir, 'data')), engineOptions(dir, over));
  await e.init();
  await e.createBucket('bkt');
  t.teardown(() => e.close());
  return { e, dir, data: path.join(dir, 'data') };
}

/** PutObject of a buffer, as the HTTP layer does it (spooled first). */
export async function putBuffer(e: Engine, bucket: string, key: string, body: Buffer) {
  const spooled = await e.spool(Readable.from([body]));
  try {
    return await e.putObject({ bucket, key, body: spooled, headers: {}, userMetadata: {}, checksums: {} });
  } finally {
    await spooled.dispose();
  }
}

/** GetObject into a buffer (a range when given). */
export async function getBuffer(e: Engine, bucket: string, key: string, range?: ByteRange): Promise<Buffer> {
  const meta = await e.headObject(bucket, key);
  const chunks: Buffer[] = [];
  for await (const c of await e.openObject(bucket, meta, range)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
