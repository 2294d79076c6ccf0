// The parts of a VCDIFF header (RFC 3284 section 4.1) that tell whether
// xdelta3 ran with external compression: without -D it decompresses gzip,
// bzip2, xz... inputs before diffing and records, in its application header
// `target/T/source/S`, which compressor (one letter, empty for none) each
// went through. Decoding such a delta as-is recompresses the output with
// whatever compressor the machine has, which rarely gives the original bytes.

export interface XdeltaHeader {
  /** Compressor letter of the target ('G' gzip, 'B' bzip2, 'Y' xz, ...), '' for none. */
  targetComp: string;
  sourceComp: string;
}

/** Parses the start of a delta; null when it is not a VCDIFF stream this can read. */
export function parseXdeltaHeader(buf: Buffer): XdeltaHeader | null {
  if (buf.length < 5 || buf[0] !== 0xd6 || buf[1] !== 0xc3 || buf[2] !== 0xc4) return null;
  const ind = buf[4];
  let at = 5;
  const varint = (): number => {
    let n = 0;
    for (let i = 0; i < 5 && at < buf.length; i++) {
      const b = buf[at++];
      n = n * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) return n;
    }
    return -1;
  };
  if (ind & 0x01) at += 1; // secondary compressor id
  if (ind & 0x02) {
    const len = varint(); // code table
    if (len < 0) return null;
    at += len;
  }
  if (!(ind & 0x04)) return { targetComp: '', sourceComp: '' };
  const len = varint();
  if (len < 0 || at + len > buf.length) return null;
  const app = buf.subarray(at, at + len).toString('latin1');
  const m = /^(.*)\/([A-Za-z]?)\/(.*)\/([A-Za-z]?)$/s.exec(app);
  return m ? { targetComp: m[2], sourceComp: m[4] } : { targetComp: '', sourceComp: '' };
}
