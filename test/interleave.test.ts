import { createHash } from 'node:crypto';
import path from 'node:path';
import t, { type Test } from 'tap';
import { release } from '../bench/corpus.js';
import { Engine } from '../src/engine/engine.js';
import type { Backend, PutOptions } from '../src/storage/backend.js';
import { FilesystemBackend } from '../src/storage/filesystem/fs-backend.js';
import { engineOptions, putBuffer } from './helpers/engine.js';
import { tempDir } from './helpers/proxy.js';

// Two engines ("instances") on one backend that says it is shared, so they
// coordinate only through conditional writes, as on S3. moto's conditional
// writes are not atomic under real concurrency, so instead of hoping for a
// race this wrapper stops one instance at a chosen step and lets the other
// act: the interleavings the protocol must survive (docs/storage-format.md,
// "Several instances").

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

type Gate = { when: (op: string, name: string) => boolean; reached: () => void; go: Promise<void> };

class Interleaving implements Backend {
  readonly kind = 'filesystem' as const;
  readonly shared = true;
  private gates: Gate[] = [];
  constructor(private readonly inner: FilesystemBackend) {}

  /** The next `op` on a blob matching `when` waits until `release` is called. */
  pause(when: (op: string, name: string) => boolean): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    let release!: () => void;
    const r = new Promise<void>((res) => (reached = res));
    const go = new Promise<void>((res) => (release = res));
    this.gates.push({ when, reached, go });
    return { reached: r, release };
  }

  private async gate(op: string, name: string): Promise<void> {
    const i = this.gates.findIndex((g) => g.when(op, name));
    if (i < 0) return;
    const [g] = this.gates.splice(i, 1);
    g.reached();
    await g.go;
  }

  init = () => this.inner.init();
  close = () => this.inner.close();
  listBuckets = () => this.inner.listBuckets();
  headBucket = (b: string) => this.inner.headBucket(b);
  createBucket = (b: string) => this.inner.createBucket(b);
  deleteBucket = (b: string, live?: (n: string) => boolean) => this.inner.deleteBucket(b, live);
  putFile = async (b: string, n: string, p: string, o?: PutOptions) => (await this.gate('putFile', n), this.inner.putFile(b, n, p, o));
  putBytes = async (b: string, n: string, body: Buffer, o?: PutOptions) => (await this.gate('putBytes', n), this.inner.putBytes(b, n, body, o));
  getStream: Backend['getStream'] = (b, n, o) => this.inner.getStream(b, n, o);
  readSmall: Backend['readSmall'] = (b, n) => this.inner.readSmall(b, n);
  head: Backend['head'] = (b, n) => this.inner.head(b, n);
  delete: Backend['delete'] = async (b, n, o) => (await this.gate('delete', n), this.inner.delete(b, n, o));
  list: Backend['list'] = (b, o) => this.inner.list(b, o);
}

async function twoInstances(t: Test) {
  const dir = await tempDir(t);
  const shared = new Interleaving(new FilesystemBackend(path.join(dir, 'data')));
  const make = async (name: string) => {
    const e = new Engine(shared, engineOptions(path.join(dir, name), { deltaExtensions: ['.zip'], toolVersion: name, sweepIntervalMs: 0 }));
    await e.init();
    t.teardown(() => e.close());
    return e;
  };
  const a = await make('a');
  const b = await make('b');
  await a.createBucket('ibk');
  return { a, b, shared };
}

const put = (e: Engine, key: string, body: Buffer) => putBuffer(e, 'ibk', key, body);

async function read(e: Engine, key: string): Promise<string | null> {
  const meta = await e.findObject('ibk', key);
  if (!meta) return null;
  const chunks: Buffer[] = [];
  for await (const c of await e.openObject('ibk', meta)) chunks.push(c as Buffer);
  return sha(Buffer.concat(chunks));
}

/** Every blob a committed sidecar names exists, and (after the grace period) nothing else is left. */
async function consistent(t: Test, e: Engine, shared: Interleaving) {
  await e.gc.drain();
  const names: string[] = [];
  for await (const x of shared.list('ibk')) names.push(x.name);
  for (const n of names.filter((x) => x.endsWith('.object.meta'))) {
    const meta = (await e.findObject('ibk', n.slice(0, -'.object.meta'.length)))!;
    for (const f of meta.stored) {
      t.ok(names.includes(f.blob as string), `${meta.key}: its blob ${f.blob} exists`);
      const ref = (f as { reference?: { blob: string } }).reference;
      if (ref) t.ok(names.includes(ref.blob), `${meta.key}: its reference exists`);
    }
  }
}

t.test('two writers of one key: the loser of the commit writes again on top', async (t) => {
  const { a, b, shared } = await twoInstances(t);
  const [v1, v2, v3] = [1, 2, 3].map((v) => release('zip', v, 0.1));
  await put(a, 'k/app.zip', v1);
  const p = shared.pause((op, n) => op === 'putBytes' && n === 'k/app.zip.object.meta');
  const slow = put(a, 'k/app.zip', v2);
  await p.reached; // A has written its blob and read the old sidecar
  await put(b, 'k/app.zip', v3); // B commits first
  p.release();
  await slow;
  t.equal(await read(b, 'k/app.zip'), sha(v2), 'the later commit (A, written again) is what both see');
  t.equal(await read(a, 'k/app.zip'), sha(v2));
  await consistent(t, a, shared);
});

t.test('a delete that loses to an overwrite leaves the overwrite', async (t) => {
  const { a, b, shared } = await twoInstances(t);
  const [v1, v2] = [1, 2].map((v) => release('zip', v, 0.1));
  await put(a, 'd/app.zip', v1);
  const p = shared.pause((op, n) => op === 'delete' && n === 'd/app.zip.object.meta');
  const del = a.deleteObject('ibk', 'd/app.zip');
  await p.reached;
  await put(b, 'd/app.zip', v2);
  p.release();
  await del;
  t.equal(await read(a, 'd/app.zip'), sha(v2), 'the newer write stands');
  await consistent(t, a, shared);
});

t.test('deleting the last delta while another instance commits a delta against the same reference', async (t) => {
  const { a, b, shared } = await twoInstances(t);
  const [v1, v2] = [1, 2].map((v) => release('zip', v, 0.1));
  await put(a, 'gc/old.zip', v1);
  // B encodes against the reference and stops before its commit.
  const p = shared.pause((op, n) => op === 'putBytes' && n === 'gc/new.zip.object.meta');
  const slow = put(b, 'gc/new.zip', v2);
  await p.reached;
  await a.deleteObject('ibk', 'gc/old.zip'); // A collects the reference if it sees no delta
  await a.gc.drain();
  p.release();
  await slow;
  t.equal(await read(a, 'gc/new.zip'), sha(v2), 'the new object reads, as a delta or stored direct');
  await consistent(t, a, shared);
});

t.test('the reference is collected while another instance encodes against it', async (t) => {
  const { a, b, shared } = await twoInstances(t);
  const [v1, v2] = [1, 2].map((v) => release('zip', v, 0.1));
  await put(a, 'gc2/old.zip', v1);
  // B has read the reference record and encoded; it stops before writing its delta blob.
  const p = shared.pause((op, n) => op === 'putFile' && /^gc2\/new\.zip\.[0-9a-f]{16}\.delta\.bin$/.test(n));
  const slow = put(b, 'gc2/new.zip', v2);
  await p.reached;
  await a.deleteObject('ibk', 'gc2/old.zip'); // sees no delta: removes the record and the reference
  await a.gc.drain();
  p.release();
  const meta = await slow;
  t.equal(meta.kind, 'direct', 'the writer finds its reference gone at confirmation and stores the object direct');
  t.equal(await read(a, 'gc2/new.zip'), sha(v2), 'readable, byte-exact');
  await consistent(t, a, shared);
});

t.test('concurrent first uploads through two instances agree on one reference', async (t) => {
  const { a, b, shared } = await twoInstances(t);
  const [v1, v2] = [1, 2].map((v) => release('zip', v, 0.1));
  const p = shared.pause((op, n) => op === 'putBytes' && n === 's/reference.meta');
  const first = put(a, 's/v1.zip', v1);
  await p.reached; // A wrote its reference blob, not yet its record
  await put(b, 's/v2.zip', v2); // B seeds and commits
  p.release();
  await first;
  await a.gc.drain();
  const refs: string[] = [];
  for await (const x of shared.list('ibk', { prefix: 's/' })) if (/reference\.[0-9a-f]{16}\.bin$/.test(x.name)) refs.push(x.name);
  t.equal(refs.length, 1, 'one reference blob: the loser removed its own');
  t.equal(await read(b, 's/v1.zip'), sha(v1));
  t.equal(await read(a, 's/v2.zip'), sha(v2));
  await consistent(t, a, shared);
});
