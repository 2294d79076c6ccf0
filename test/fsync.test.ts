import path from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { Engine } from '../src/engine/engine.js';
import { FilesystemBackend } from '../src/storage/filesystem/fs-backend.js';
import { engineOptions } from './helpers/engine.js';
import { tempDir } from './helpers/proxy.js';

// kill -9 cannot show a missing fsync (the page cache survives the process),
// so the filesystem backend reports each fsync and this test checks that
// every blob a commit names, and the commit itself, are durable, file and
// directory, before the write is acknowledged, and in that order.

t.test('every blob and the sidecar are fsynced, file and directory, before the acknowledgement', async (t) => {
  const dir = await tempDir(t);
  const events: string[] = [];
  const backend = new FilesystemBackend(path.join(dir, 'data'), { onSync: (p, what) => events.push(`${what} ${path.relative(path.join(dir, 'data'), p)}`) });
  const e = new Engine(backend, engineOptions(dir, { deltaExtensions: ['.zip'], sweepIntervalMs: 0 }));
  await e.init();
  t.teardown(() => e.close());
  await e.createBucket('sync');
  for (const [key, body] of [['r/v1.zip', release('zip', 1, 0.1)], ['r/v2.zip', release('zip', 2, 0.1)], ['r/v2.zip', release('zip', 3, 0.1)], ['plain.txt', Buffer.from('hello')]] as const) {
    events.length = 0;
    const spooled = await e.spool(Readable.from([body]));
    const meta = await e.putObject({ bucket: 'sync', key, body: spooled, headers: {}, userMetadata: {}, checksums: {} });
    await spooled.dispose();
    const acked = [...events];
    const at = (s: string) => acked.indexOf(s);
    const sidecar = `sync/${key}.object.meta`;
    const blob = `sync/${meta.stored[0].blob}`;
    const dirOf = (p: string) => path.dirname(p);
    t.ok(at(`file ${blob}`) >= 0, `${key}: data blob fsynced`);
    const blobDir = acked.indexOf(`dir ${dirOf(blob)}`, at(`file ${blob}`));
    t.ok(blobDir > at(`file ${blob}`), `${key}: its directory fsynced after it`);
    t.ok(at(`file ${sidecar}`) > blobDir, `${key}: the commit comes after the data is durable`);
    t.ok(acked.lastIndexOf(`dir ${dirOf(sidecar)}`) > at(`file ${sidecar}`), `${key}: the commit's directory fsynced before the acknowledgement`);
    const ref = (meta.stored[0] as { reference?: { blob: string } }).reference;
    if (ref && key === 'r/v1.zip') t.ok(at(`file sync/${ref.blob}`) >= 0 && at(`file sync/${ref.blob}`) < at(`file ${sidecar}`), 'the seeded reference is durable before the commit');
  }
});
