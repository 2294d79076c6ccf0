import { Transform, type TransformCallback } from 'node:stream';
import { S3Error } from '../errors.js';

// Decoder for aws-chunked request bodies (Content-Encoding: aws-chunked,
// x-amz-content-sha256: STREAMING-...), as described in the S3 API reference,
// "Signature Calculations for the Authorization Header: Transferring Payload in
// Multiple Chunks" and "... Including Trailing Headers":
//
//   <hex-size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0[;chunk-signature=<sig>]\r\n
//   [<trailer-name>:<value>\r\n ...][x-amz-trailer-signature:<sig>\r\n]\r\n
//
// The decoder streams: it never holds more than one header line. A verifier
// (the auth layer) may check each chunk signature and the trailer signature.

export interface ChunkVerifier {
  /** Called with each chunk's data as it arrives. */
  update(data: Buffer): void;
  /** A chunk header ended the previous chunk; throw to reject the body. */
  chunk(signature: string | undefined, size: number): void;
  /** The trailer block (raw lines, without the signature line). */
  trailer(lines: string[], signature: string | undefined): void;
}

const MAX_LINE = 4096;
type State = 'header' | 'data' | 'data-crlf' | 'trailer' | 'done';

export class AwsChunkedDecoder extends Transform {
  readonly trailers: Record<string, string> = {};
  private state: State = 'header';
  private line = '';
  private remaining = 0;
  private crlf = 0;
  private trailerLines: string[] = [];
  private trailerSignature: string | undefined;

  constructor(private readonly verifier?: ChunkVerifier) {
    super();
  }

  private bad(msg: string): S3Error {
    return new S3Error('IncompleteBody', `Malformed aws-chunked body: ${msg}`);
  }

  override _transform(buf: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      let i = 0;
      while (i < buf.length) {
        switch (this.state) {
          case 'data': {
            const n = Math.min(this.remaining, buf.length - i);
            const part = buf.subarray(i, i + n);
            this.verifier?.update(part);
            this.push(part);
            this.remaining -= n;
            i += n;
            if (this.remaining === 0) {
              this.state = 'data-crlf';
              this.crlf = 0;
            }
            break;
          }
          case 'data-crlf': {
            const expect = this.crlf === 0 ? 0x0d : 0x0a;
            if (buf[i] !== expect) throw this.bad('chunk data not followed by CRLF');
            i++;
            if (++this.crlf === 2) this.state = 'header';
            break;
          }
          case 'header':
          case 'trailer': {
            const nl = buf.indexOf(0x0a, i);
            const end = nl < 0 ? buf.length : nl;
            this.line += buf.toString('latin1', i, end);
            if (this.line.length > MAX_LINE) throw this.bad('header line too long');
            i = end;
            if (nl < 0) break;
            i++;
            const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
            this.line = '';
            if (this.state === 'header') this.onHeader(line);
            else this.onTrailer(line);
            break;
          }
          case 'done':
            // Bytes after the final CRLF: tolerated (some clients add padding).
            i = buf.length;
            break;
        }
      }
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  private onHeader(line: string): void {
    const [sizeHex, ...exts] = line.split(';');
    if (!/^[0-9a-fA-F]{1,16}$/.test(sizeHex.trim())) throw this.bad(`bad chunk size ${JSON.stringify(sizeHex.slice(0, 20))}`);
    const size = parseInt(sizeHex, 16);
    let sig: string | undefined;
    for (const e of exts) {
      const [k, v] = e.split('=');
      if (k.trim() === 'chunk-signature') sig = v?.trim();
    }
    this.verifier?.chunk(sig, size);
    if (size === 0) {
      this.state = 'trailer';
      return;
    }
    this.remaining = size;
    this.state = 'data';
  }

  private onTrailer(line: string): void {
    if (line === '') {
      this.verifier?.trailer(this.trailerLines, this.trailerSignature);
      this.state = 'done';
      return;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw this.bad('bad trailer line');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'x-amz-trailer-signature') this.trailerSignature = value;
    else {
      this.trailers[name] = value;
      this.trailerLines.push(`${name}:${value}`);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.state === 'trailer') {
      // The final CRLF (and even the last line's) is optional in practice.
      try {
        const last = this.line.replace(/\r$/, '');
        if (last !== '') this.onTrailer(last);
        this.verifier?.trailer(this.trailerLines, this.trailerSignature);
      } catch (err) {
        cb(err as Error);
        return;
      }
      this.state = 'done';
    }
    if (this.state !== 'done') {
      cb(new S3Error('IncompleteBody'));
      return;
    }
    cb();
  }
}
