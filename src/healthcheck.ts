#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { loadConfig } from './config/config.js';

// The container health check (Dockerfile HEALTHCHECK): asks /_/health on the
// address the running server was configured with. It resolves the server's
// own configuration (file, env, flags) from PID 1's command line and
// environment when it can read them, so the check follows the configured
// port however it was set; else from its own.

function proc(file: string): string[] | null {
  try {
    return readFileSync(file, 'utf8').split('\0').filter(Boolean);
  } catch {
    return null;
  }
}

function healthUrl(listenAddr: string): string {
  const m = /^(.*):(\d+)$/.exec(listenAddr);
  if (!m) throw new Error(`bad listen address ${listenAddr}`);
  let host = m[1].replace(/^\[|\]$/g, '');
  // A wildcard address is reached on loopback.
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${m[2]}/_/health`;
}

async function main(): Promise<number> {
  const cmdline = proc('/proc/1/cmdline') ?? [];
  const main = cmdline.findIndex((a) => /main\.js$/.test(a));
  // PID 1 is the server in its container; anywhere else, use our own.
  const environ = main >= 0 ? proc('/proc/1/environ') : null;
  const argv = main >= 0 ? cmdline.slice(main + 1) : [];
  const env = environ ? Object.fromEntries(environ.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) : process.env;
  const action = loadConfig({ argv: argv.filter((a) => a !== 'stats'), env });
  if (action.action !== 'run') return 0;
  const r = await fetch(healthUrl(action.config.listenAddr), { signal: AbortSignal.timeout(4000) });
  return r.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`healthcheck: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
