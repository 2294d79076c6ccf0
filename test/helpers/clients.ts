import { S3Client } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import type { Test } from 'tap';
import { existsSync } from 'node:fs';
import { DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY } from '../../src/config/config.js';

export const creds = { accessKeyId: DEV_ACCESS_KEY_ID, secretAccessKey: DEV_SECRET_ACCESS_KEY };

/** @aws-sdk/client-s3 with its default checksum settings (aws-chunked PUTs). */
export function sdk(url: string, over: Partial<ConstructorParameters<typeof S3Client>[0]> = {}): S3Client {
  // A socket idle for two minutes fails the request: a server that hangs
  // fails its test in minutes, not at tap's per-file timeout.
  return new S3Client({ endpoint: url, region: 'us-east-1', forcePathStyle: true, credentials: creds, requestHandler: { requestTimeout: 120_000 }, ...over });
}

/** Environment for CLI clients: our key pair, no user config, no pager. */
export function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('AWS_')) env[k] = v;
  }
  return {
    ...env,
    AWS_ACCESS_KEY_ID: creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_PAGER: '',
    ...extra,
  };
}

/**
 * Whether a client program is installed. Under CI=true a missing one fails the
 * run (.ci/run installs them all); elsewhere its tests skip and say why.
 */
export async function available(cmd: string[], what: string): Promise<string | false> {
  const ok = existsSync(cmd[0]) || !cmd[0].startsWith('/')
    ? (await execa(cmd[0], cmd.slice(1), { reject: false, env: cliEnv() })).exitCode === 0
    : false;
  if (ok) return false;
  if (process.env.CI === 'true') throw new Error(`${what} is required under CI=true (.ci/run installs it)`);
  return `${what} is not installed (${cmd.join(' ')} failed); install it to run this test`;
}

export function run(cmd: string, args: string[], opts: { env?: Record<string, string>; input?: string } = {}) {
  return execa(cmd, args, { env: opts.env ?? cliEnv(), extendEnv: false, input: opts.input, reject: false, all: true, timeout: 240_000 });
}

/** Asserts a client command succeeded; its output is shown only when it did not. */
export function expectOk(t: Test, r: { exitCode?: number; all?: string }, what: string): void {
  t.equal(r.exitCode, 0, r.exitCode === 0 ? what : `${what}\n${r.all}`);
}

/**
 * Environment for rclone with a remote "dgp:" on the proxy. AWS_CA_BUNDLE is
 * dropped: rclone fails on the one this machine sets.
 */
export function rcloneEnv(url: string, extra: Record<string, string> = {}): Record<string, string> {
  const env = cliEnv({
    RCLONE_CONFIG: '/dev/null',
    RCLONE_CONFIG_DGP_TYPE: 's3',
    RCLONE_CONFIG_DGP_PROVIDER: 'Other',
    RCLONE_CONFIG_DGP_ENDPOINT: url,
    RCLONE_CONFIG_DGP_ACCESS_KEY_ID: creds.accessKeyId,
    RCLONE_CONFIG_DGP_SECRET_ACCESS_KEY: creds.secretAccessKey,
    RCLONE_CONFIG_DGP_REGION: 'us-east-1',
    RCLONE_CONFIG_DGP_FORCE_PATH_STYLE: 'true',
    ...extra,
  });
  delete env.AWS_CA_BUNDLE;
  return env;
}
