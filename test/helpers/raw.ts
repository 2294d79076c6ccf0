import * as fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import aws4 from 'aws4';
import { creds } from './clients.js';

// Raw sockets (node:net): requests that stop half-way, responses never read.

/** The head of a SigV4-signed request (UNSIGNED-PAYLOAD), ready to write to a socket. */
export function signedHead(port: number, method: string, urlPath: string, headers: Record<string, string> = {}): string {
  const host = `127.0.0.1:${port}`;
  const signed = aws4.sign({ host, method, path: urlPath, headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers }, service: 's3', region: 'us-east-1' }, creds);
  const lines = [`${method} ${urlPath} HTTP/1.1`, `host: ${host}`];
  for (const [k, v] of Object.entries(signed.headers as Record<string, string>)) if (k.toLowerCase() !== 'host') lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

export interface RawConn {
  socket: net.Socket;
  /** Everything received so far. */
  received(): string;
  /** Resolves when the server closes the connection, with the time it took. */
  closed: Promise<number>;
}

export async function connect(port: number): Promise<RawConn> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const chunks: Buffer[] = [];
  const t0 = Date.now();
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - t0)));
  socket.on('error', () => {});
  socket.on('data', (c: Buffer) => chunks.push(c));
  return { socket, received: () => Buffer.concat(chunks).toString('latin1'), closed };
}

/** A connection that reads nothing: the socket is paused and its receive buffer small. */
export async function connectNonReading(port: number): Promise<RawConn> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.pause();
  const t0 = Date.now();
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - t0)));
  socket.on('error', () => {});
  return { socket, received: () => '', closed };
}

/** Temp files under the proxy's scratch space (not the reference cache, not the instance records). */
export async function scratchFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'cache') await walk(p);
      }
      else if (e.name !== 'owner.json') out.push(p);
    }
  };
  await walk(dir);
  return out;
}

export async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
