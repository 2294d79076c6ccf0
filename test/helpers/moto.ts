import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { execa, type ResultPromise } from 'execa';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../bench/util.js';
import type { Config } from '../../src/config/config.js';

// An independent S3 server for the S3 backend's tests: moto_server (Python
// package moto), started on a free loopback port and stopped after the test.
// Without it the tests skip and say why, except under CI=true, where .ci/run
// guarantees it and a missing one fails the run.
//
// It runs through moto_atomic.py, which makes moto's conditional writes atomic
// as S3's are: moto alone lets two racing If-Match writes both succeed.
const atomicMoto = fileURLToPath(new URL('./moto_atomic.py', import.meta.url));

export const MOTO_CREDS = { accessKeyId: 'motoaccess', secretAccessKey: 'motosecret' };

export async function motoAvailable(): Promise<string | false> {
  const r = await execa('python3', [atomicMoto, '--help'], { reject: false });
  if (r.exitCode === 0) return false;
  if (process.env.CI === 'true') throw new Error(`moto_server is required under CI=true (pip package moto[server]): ${r.stderr || r.message}`);
  return 'moto_server is not installed (pip install "moto[server]"); S3 backend tests skipped';
}

export interface Moto {
  endpoint: string;
  client: S3Client;
  /** Creates a backend bucket and returns proxy config pointing at it. */
  backend(bucket: string, prefix?: string): Promise<Partial<Config>>;
  /** Stops the server (to test how the proxy meets an unreachable backend). */
  stop(): Promise<void>;
  /** Freezes (SIGSTOP) or thaws (SIGCONT) the server: a backend that accepts connections and never answers. */
  freeze(frozen: boolean): void;
}

interface Teardownable {
  teardown(fn: () => unknown): void;
}

export async function startMoto(t: Teardownable): Promise<Moto> {
  const port = await freePort();
  const child: ResultPromise = execa('python3', [atomicMoto, '-H', '127.0.0.1', '-p', String(port)], { reject: false, stdio: 'ignore' });
  t.teardown(async () => {
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    await child;
  });
  const endpoint = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`${endpoint}/moto-api/`);
      if (r.status < 500) break;
    } catch {
      if (i > 150) throw new Error('moto_server did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: MOTO_CREDS });
  t.teardown(() => client.destroy());
  return {
    endpoint,
    client,
    async stop() {
      child.kill('SIGTERM');
      await child;
    },
    freeze(frozen) {
      child.kill(frozen ? 'SIGSTOP' : 'SIGCONT');
    },
    async backend(bucket, prefix = '') {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      return {
        s3Bucket: bucket,
        s3Endpoint: endpoint,
        s3Region: 'us-east-1',
        s3ForcePathStyle: true,
        s3Prefix: prefix,
        s3AccessKeyId: MOTO_CREDS.accessKeyId,
        s3SecretAccessKey: MOTO_CREDS.secretAccessKey,
      };
    },
  };
}
