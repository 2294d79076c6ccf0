import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { build } from './app.js';
import type { Config } from './config/config.js';
import type { TlsFiles } from './http/app.js';
import { lockDataDir, StartupError, type DataDirLock } from './lifecycle/data-dir-lock.js';

export { StartupError } from './lifecycle/data-dir-lock.js';

// Starting and stopping a serving proxy: the data dir lock, the app, the
// listening socket, and a graceful stop. Every failure a user can fix is a
// StartupError with one line that names the setting and what to do.

export interface RunningServer {
  app: FastifyInstance;
  /** http(s)://host:port actually bound (port 0 resolved). */
  url: string;
  /**
   * Stops accepting connections, lets requests in flight finish for up to
   * `graceMs` (default shutdown_timeout_secs), closes the rest, removes the
   * instance's temp files and releases the lock.
   */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  /** Progress worth telling the operator before the logger exists. */
  notice?: (msg: string) => void;
}

async function readTls(config: Config): Promise<TlsFiles | undefined> {
  if (!config.tlsCertFile) return undefined;
  const read = async (key: string, file: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new StartupError(`${key} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): point it at a PEM file this user can read`);
    }
  };
  return { cert: await read('tls_cert_file', config.tlsCertFile), key: await read('tls_key_file', config.tlsKeyFile) };
}

function listenProblem(addr: string, err: NodeJS.ErrnoException): Error {
  const how = 'choose another with --listen / DELTAGLIDER_PROXY_LISTEN_ADDR';
  switch (err.code) {
    case 'EADDRINUSE':
      return new StartupError(`listen_addr ${addr} is already in use by another process: stop it, or ${how}`);
    case 'EACCES':
    case 'EPERM':
      return new StartupError(`listen_addr ${addr}: not allowed to listen there (ports below 1024 need privileges): ${how}`);
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new StartupError(`listen_addr ${addr}: no such address on this host: ${how}`);
    default:
      return err;
  }
}

function tlsProblem(err: Error): Error {
  const m = err.message;
  if (/PEM|certificate|private key|key values mismatch|asn1|DECODER/i.test(m)) {
    return new StartupError(`tls_cert_file / tls_key_file: ${m.split('\n')[0]}: give a PEM certificate and its matching private key`);
  }
  return err;
}

/** Starts serving `config`; see RunningServer. */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const tls = await readTls(config);
  // Before anything else touches the data dir (the backend's start-up clean-up).
  const lock: DataDirLock | null = config.s3Bucket ? null : await lockDataDir(config.dataDir, opts.notice);
  let app: FastifyInstance | undefined;
  try {
    try {
      app = await build(config, tls);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (!config.s3Bucket && (e.code === 'EACCES' || e.code === 'EROFS' || e.code === 'EPERM')) {
        throw new StartupError(`data_dir ${config.dataDir} is not writable (${e.code} on ${e.path ?? 'a file in it'}): fix its permissions or choose another with --data-dir / DELTAGLIDER_PROXY_DATA_DIR`);
      }
      if (config.tmpDir && (e.code === 'EACCES' || e.code === 'EROFS' || e.code === 'EPERM' || e.code === 'ENOTDIR')) {
        throw new StartupError(`tmp_dir ${config.tmpDir} is not writable (${e.code}): fix its permissions or choose another with DELTAGLIDER_PROXY_TMP_DIR`);
      }
      throw tlsProblem(e);
    }
    const m = /^(.*):(\d+)$/.exec(config.listenAddr)!;
    const host = m[1].replace(/^\[|\]$/g, '');
    try {
      await app.listen({ host, port: Number(m[2]) });
    } catch (err) {
      throw listenProblem(config.listenAddr, err as NodeJS.ErrnoException);
    }
  } catch (err) {
    await app?.close().catch(() => {});
    await lock?.release();
    throw err;
  }
  const server = app;
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const shownHost = /:/.test(host(config)) ? `[${host(config)}]` : host(config);
  let stopping: Promise<void> | undefined;
  return {
    app: server,
    url: `${tls ? 'https' : 'http'}://${shownHost}:${port}`,
    stop: (graceMs = config.shutdownTimeoutSecs * 1000) => {
      stopping ??= (async () => {
        // app.close() stops accepting, closes idle keep-alive connections,
        // answers new requests on open ones with 503 and waits for those in
        // flight; past the grace period they are cut.
        const force = setTimeout(() => server.server.closeAllConnections(), graceMs);
        force.unref();
        // Keep-alive connections whose request finishes during the drain
        // would otherwise idle until their keep-alive timeout.
        const reap = setInterval(() => server.server.closeIdleConnections(), 100);
        try {
          await server.close();
        } finally {
          clearTimeout(force);
          clearInterval(reap);
          await lock?.release();
        }
      })();
      return stopping;
    },
  };
}

function host(config: Config): string {
  return /^(.*):(\d+)$/.exec(config.listenAddr)![1].replace(/^\[|\]$/g, '');
}
