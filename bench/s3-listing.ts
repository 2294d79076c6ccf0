import { CopyObjectCommand, CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execa, type ResultPromise } from 'execa';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { mapLimit } from '../src/log.js';
import { fmt, freePort, peakRss, request, startProxy, table, timed, type Proxy } from './util.js';

// Listing on the S3 backend: ListObjectsV2 over one prefix of N keys through
// the proxy, beside the bare backend's ListObjectsV2 of the same prefix, and
// the backend requests each proxy page costs, counted from moto_server's
// access log (werkzeug logs one line per request). moto scans its whole
// bucket on every list call, so its absolute times say little about a real
// S3; the ratios and the request counts are the point.

const BACKEND = 'bench-backend';
const BUCKET = 's3list';
const MOTO_CREDS = { accessKeyId: 'motoaccess', secretAccessKey: 'motosecret' };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (s: number) => `${fmt(s * 1000, 0)} ms`;
const keyName = (i: number) => `many/obj-${String(i).padStart(7, '0')}.txt`;

interface Counts {
  /** ListObjectsV2 calls on the listed prefix. */
  list: number;
  sidecarGet: number;
  /** HEADs of sidecar names (look-ups by name); other HEADs (the bucket record) count as other. */
  head: number;
  /** The rest: the bucket record's HEAD, background lists of other prefixes. */
  other: number;
}

/** moto_server with its access log read: requests are counted between two markers. */
class Moto {
  readonly client: S3Client;
  private lines: string[] = [];
  private marks = 0;

  private constructor(
    readonly endpoint: string,
    private readonly child: ResultPromise,
  ) {
    this.client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: MOTO_CREDS, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
    let rest = '';
    child.stderr!.on('data', (c: Buffer) => {
      const all = rest + c.toString();
      const parts = all.split('\n');
      rest = parts.pop()!;
      for (const l of parts) if (l.includes('"')) this.lines.push(l);
    });
  }

  static async start(): Promise<Moto> {
    const port = await freePort();
    const child = execa('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { reject: false, stdout: 'ignore', stderr: 'pipe', buffer: false });
    const endpoint = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      try {
        const r = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(2000) });
        if (r.status < 500) break;
      } catch {
        if (i > 150) throw new Error('moto_server did not start (pip install "moto[server]")');
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return new Moto(endpoint, child);
  }

  /**
   * Requests since the last call, by kind. A marker request (an unsigned
   * HEAD moto answers 404) closes the window: its log line comes after every
   * line of the requests answered before it.
   */
  async count(): Promise<Counts> {
    const mark = `__bench-mark-${++this.marks}`;
    await fetch(`${this.endpoint}/${BACKEND}/${mark}`, { method: 'HEAD', signal: AbortSignal.timeout(10_000) });
    const t0 = Date.now();
    let at: number;
    while ((at = this.lines.findIndex((l) => l.includes(mark))) < 0) {
      if (Date.now() - t0 > 10_000) throw new Error('marker request not in the moto log');
      await new Promise((r) => setTimeout(r, 10));
    }
    const window = this.lines.slice(0, at);
    this.lines = this.lines.slice(at + 1);
    const c: Counts = { list: 0, sidecarGet: 0, head: 0, other: 0 };
    for (const l of window) {
      const m = /"(\w+) (\S+) HTTP/.exec(l);
      if (!m) continue;
      // Lists of the page's prefix; the proxy's background work (compaction, usage) lists other prefixes.
      if (m[1] === 'GET' && m[2].includes('list-type=2') && /[?&]prefix=s3list(\/|%2F)/.test(m[2])) c.list++;
      else if (m[1] === 'GET' && m[2].split('?')[0].endsWith('.meta')) c.sidecarGet++;
      else if (m[1] === 'HEAD' && m[2].split('?')[0].endsWith('.meta')) c.head++;
      else c.other++;
    }
    return c;
  }

  async stop(): Promise<void> {
    this.client.destroy();
    this.child.kill('SIGTERM');
    await this.child;
  }
}

/** One seed object through the proxy, then N clones of its sidecar and blob made in the backend directly. */
async function populate(moto: Moto, port: number, work: string, n: number): Promise<void> {
  const seedFile = path.join(work, 's3list-seed.txt');
  await fsp.writeFile(seedFile, 'x'.repeat(1000));
  if ((await request(port, 'PUT', `/${BUCKET}`)).status !== 200) throw new Error('bucket PUT failed');
  const r = await request(port, 'PUT', `/${BUCKET}/many/seed.txt`, seedFile);
  if (r.status !== 200) throw new Error(`seed PUT: ${r.status}`);
  const get = await moto.client.send(new GetObjectCommand({ Bucket: BACKEND, Key: `${BUCKET}/many/seed.txt.object.meta` }));
  const sidecar = JSON.parse(await get.Body!.transformToString()) as { key: string; stored: { blob: string; etag: string }[] };
  if (sidecar.stored.length !== 1 || !sidecar.stored[0].blob.endsWith('.direct.bin')) throw new Error(`unexpected seed sidecar: ${JSON.stringify(sidecar.stored)}`);
  // Blobs live apart from the sidecars (docs/storage-format.md, "S3 backend layout").
  const apart = (name: string) => `.deltaglider/blobs/${BUCKET}/${name}`;
  const seedBlob = apart(sidecar.stored[0].blob);
  await mapLimit(
    Array.from({ length: n }, (_, i) => i),
    32,
    async (i) => {
      const key = keyName(i);
      const blob = `${key}.${i.toString(16).padStart(16, '0')}.direct.bin`;
      // Same bytes, so the same etag (the MD5) as the seed's blob.
      const c = await moto.client.send(new CopyObjectCommand({ Bucket: BACKEND, Key: apart(blob), CopySource: `${BACKEND}/${seedBlob}` }));
      const etag = (c.CopyObjectResult?.ETag ?? '').replace(/"/g, '');
      const body = JSON.stringify({ ...sidecar, key, stored: [{ ...sidecar.stored[0], blob, etag }] });
      await moto.client.send(new PutObjectCommand({ Bucket: BACKEND, Key: `${BUCKET}/${key}.object.meta`, Body: body, ContentType: 'application/json' }));
    },
  );
  await fsp.rm(seedFile);
}

function listPath(query: Record<string, string>): string {
  return `/${BUCKET}?${new URLSearchParams({ 'list-type': '2', prefix: 'many/', ...query }).toString()}`;
}

async function page(port: number, query: Record<string, string>): Promise<{ seconds: number; keys: string[]; next?: string }> {
  const [r, seconds] = await timed(() => request(port, 'GET', listPath(query)));
  if (r.status !== 200) throw new Error(`list: ${r.status} ${r.text.slice(0, 200)}`);
  const keys = [...r.text.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]);
  const next = /<NextContinuationToken>([^<]+)</.exec(r.text)?.[1];
  return { seconds, keys, next };
}

/** Measured proxy pages with the backend requests each one made. */
class Tally {
  readonly seconds: number[] = [];
  readonly counts: Counts[] = [];
  constructor(private readonly moto: Moto) {}
  async run(fn: () => Promise<{ seconds: number }>): Promise<void> {
    await this.moto.count(); // close whatever came before
    const p = await fn();
    this.seconds.push(p.seconds);
    this.counts.push(await this.moto.count());
  }
  per(k: keyof Counts): string {
    const xs = this.counts.map((c) => c[k]);
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    return lo === hi ? String(lo) : `${lo}-${hi}`;
  }
}

async function bare(moto: Moto, token?: string): Promise<{ seconds: number; next?: string }> {
  const [r, seconds] = await timed(() => moto.client.send(new ListObjectsV2Command({ Bucket: BACKEND, Prefix: `${BUCKET}/many/`, MaxKeys: 1000, ContinuationToken: token, EncodingType: 'url' })));
  return { seconds, next: r.NextContinuationToken };
}

export async function s3Listing(work: string, n: number): Promise<void> {
  if ((await execa('moto_server', ['--help'], { reject: false, timeout: 30_000 })).exitCode !== 0) {
    console.log('\nListing on the S3 backend: skipped, moto_server is not installed (pip install "moto[server]").');
    return;
  }
  const moto = await Moto.start();
  let proxy: Proxy | undefined;
  try {
    await moto.client.send(new CreateBucketCommand({ Bucket: BACKEND }));
    const data = path.join(work, 's3list-data');
    const env = {
      DELTAGLIDER_PROXY_S3_BUCKET: BACKEND,
      DELTAGLIDER_PROXY_S3_ENDPOINT: moto.endpoint,
      DELTAGLIDER_PROXY_S3_REGION: 'us-east-1',
      DELTAGLIDER_PROXY_S3_ACCESS_KEY_ID: MOTO_CREDS.accessKeyId,
      DELTAGLIDER_PROXY_S3_SECRET_ACCESS_KEY: MOTO_CREDS.secretAccessKey,
    };
    proxy = await startProxy(data, [], env);
    const [, made] = await timed(() => populate(moto, proxy!.port, work, n));
    proxy.child.kill('SIGTERM');
    await proxy.child;
    // Cold: a fresh process, no sidecar or listing caches.
    proxy = await startProxy(data, [], env);
    const port = proxy.port;
    const cold = new Tally(moto);
    let first: Awaited<ReturnType<typeof page>> | undefined;
    await cold.run(async () => (first = await page(port, {})));
    if (first!.keys.length !== 1000 || first!.keys[0] !== keyName(0)) throw new Error(`first page: ${first!.keys.length} keys from ${first!.keys[0]}`);
    const warm = new Tally(moto);
    for (let i = 0; i < 5; i++) await warm.run(() => page(port, {}));
    // Continued pages, cold (no earlier page read their sidecars), then the same pages again, warm.
    const cont = new Tally(moto);
    const tokens: string[] = [];
    let token = first!.next;
    // Full pages only (the last may be short); each cold one reads 1000 sidecars, several seconds against moto.
    const continued = Math.min(4, Math.floor(n / 1000) - 1);
    for (let i = 0; i < continued && token; i++) {
      tokens.push(token);
      await cont.run(async () => {
        const p = await page(port, { 'continuation-token': token! });
        token = p.next;
        return p;
      });
    }
    const contWarm = new Tally(moto);
    for (const t of tokens) await contWarm.run(() => page(port, { 'continuation-token': t }));
    // start-after at points spread over the prefix (warm where a continued page read the sidecars).
    const after = new Tally(moto);
    for (let i = 0; i < 10; i++) {
      const at = Math.floor(((i + 0.5) / 10) * n);
      await after.run(async () => {
        const p = await page(port, { 'start-after': keyName(at) });
        if (p.keys[0] !== keyName(at + 1)) throw new Error(`start-after ${keyName(at)} began at ${p.keys[0]}`);
        return p;
      });
    }
    // Sanity: every key (and the seed) once, in order.
    let total = 0;
    let prev = '';
    token = undefined;
    do {
      const p = await page(port, token ? { 'continuation-token': token } : {});
      for (const k of p.keys) {
        if (k <= prev) throw new Error(`listing out of order: ${k} after ${prev}`);
        prev = k;
      }
      total += p.keys.length;
      token = p.next;
    } while (token);
    if (total !== n + 1) throw new Error(`the proxy listed ${total} keys of ${n + 1}`);
    const got = await request(port, 'GET', `/${BUCKET}/${keyName(n - 1)}`);
    if (got.status !== 200 || got.bytes !== 1000) throw new Error(`GET of a cloned key: ${got.status}, ${got.bytes} bytes`);
    const rss = peakRss(proxy.pid);
    // The bare backend: the same prefix, 1000 entries a call (sidecars and blobs alike).
    const bareFirst: number[] = [];
    for (let i = 0; i < 5; i++) bareFirst.push((await bare(moto)).seconds);
    const bareCont: number[] = [];
    let bt = (await bare(moto)).next;
    for (let i = 0; i < 10 && bt; i++) {
      const p = await bare(moto, bt);
      bareCont.push(p.seconds);
      bt = p.next;
    }
    const bf = median(bareFirst);
    const bc = median(bareCont);
    const row = (name: string, t: Tally, base: number): string[] => [
      name, ms(median(t.seconds)), ms(base), fmt(median(t.seconds) / base, 1), t.per('list'), t.per('head'), t.per('sidecarGet'), t.per('other'),
    ];
    console.log(`\nListing on the S3 backend (moto_server): ListObjectsV2 over one prefix of ${n} keys, ${2 * n} backend objects (a sidecar under the bucket's prefix and a blob apart, each; ${fmt(made, 1)} s to lay them out).`);
    table(
      ['case', 'proxy', 'bare backend', 'proxy/bare', 'backend lists', 'sidecar HEADs', 'sidecar GETs', 'other'],
      [
        row('first page, cold (1000 keys)', cold, bf),
        row('first page, warm (median of 5)', warm, bf),
        row(`continued pages, cold (median of ${cont.seconds.length})`, cont, bc),
        row(`the same continued pages, warm`, contWarm, bc),
        row('start-after, 10 points (median)', after, bc),
      ],
    );
    console.log(`bare backend: ListObjectsV2 of ${BUCKET}/many/ in moto, 1000 entries a call (1000 keys' sidecars); first call median of 5, continued median of ${bareCont.length}.`);
    console.log('backend requests per proxy page, from moto\'s access log (min-max over the measured pages). moto reads its whole bucket per list call: its times grow with the bucket, real S3\'s do not.');
    console.log(`proxy peak RSS: ${fmt(rss)} MB`);
  } finally {
    if (proxy) {
      proxy.child.kill('SIGTERM');
      await proxy.child;
    }
    await moto.stop();
  }
}
