import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { runScrub } from '../src/cli/scrub.js';
import { defaultConfig } from '../src/config/config.js';
import { sdk } from './helpers/clients.js';
import { blobs, startProxy } from './helpers/proxy.js';

// `deltaglider-proxy scrub`: reads the data dir beside a running proxy (no
// lock), prints a summary, exits 0 when intact and 1 when it finds damage.

function sink(): { stream: Writable; text: () => string } {
  let out = '';
  return {
    stream: new Writable({
      write(c, _e, cb) {
        out += c;
        cb();
      },
    }),
    text: () => out,
  };
}

t.test('scrub: exit codes, summary and JSON', async (t) => {
  const proxy = await startProxy(t, { s3Bucket: '' });
  const s3 = sdk(proxy.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'scrubbed' }));
  await s3.send(new PutObjectCommand({ Bucket: 'scrubbed', Key: 'r/v1.zip', Body: release('zip', 1, 0.2) }));
  await s3.send(new PutObjectCommand({ Bucket: 'scrubbed', Key: 'r/v2.zip', Body: release('zip', 2, 0.2) }));
  const config = defaultConfig({ dataDir: proxy.dataDir, logLevel: 'silent' });
  const ok = sink();
  t.equal(await runScrub(config, 's3://scrubbed', false, ok.stream, sink().stream), 0, 'intact: exit 0');
  t.match(ok.text(), /2 objects .* 0 damaged objects, 0 damaged references/);
  const v2 = (await blobs(proxy, 'scrubbed', 'r/')).find((b) => b.name.startsWith('r/v2.zip.') && b.name.endsWith('.delta.bin'))!;
  const file = path.join(proxy.dataDir, 'scrubbed', 'r', v2.name.slice(2));
  const buf = await fsp.readFile(file);
  buf[buf.length >> 1] ^= 1;
  await fsp.writeFile(file, buf);
  const bad = sink();
  t.equal(await runScrub(config, 's3://scrubbed/r/', true, bad.stream, sink().stream), 1, 'damage: exit 1');
  const report = JSON.parse(bad.text());
  t.equal(report.ok, false);
  t.same(report.damaged.map((d: { key: string }) => d.key), ['r/v2.zip']);
});
