// User metadata (x-amz-meta-*) values with characters outside US-ASCII, as
// the S3 user guide describes them ("Working with object metadata",
// user-defined metadata): values are decoded per RFC 2047 before they are
// stored, and a value holding non-US-ASCII characters is returned RFC 2047
// encoded ("mail-safe"); an ASCII value is returned as it is.
//
// Header values reach Node as latin1 strings, one character per byte sent.
// Clients send non-ASCII text either as raw UTF-8 bytes (curl, Go and Rust
// SDKs, s3cmd) or as latin1 bytes (Node's http, Python's http.client): bytes
// that form valid UTF-8 are read as UTF-8, anything else as latin1.

const ENCODED_WORD = /=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=/g;

/** The text of a header value, from the bytes sent. */
export function headerText(latin1: string): string {
  if (!/[^\x00-\x7f]/.test(latin1)) return latin1;
  const bytes = Buffer.from(latin1, 'latin1');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return latin1;
  }
}

function decodeWord(charset: string, encoding: string, text: string): string | null {
  const cs = charset.toLowerCase().replace(/\*.*$/, '');
  const enc: BufferEncoding | null = cs === 'utf-8' || cs === 'utf8' ? 'utf8' : cs === 'iso-8859-1' || cs === 'latin1' || cs === 'us-ascii' ? 'latin1' : null;
  if (!enc) return null;
  if (encoding === 'B' || encoding === 'b') {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
    return Buffer.from(text, 'base64').toString(enc);
  }
  // Q: '_' is a space, =XX a byte (RFC 2047 section 4.2).
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '_') bytes.push(0x20);
    else if (c === '=' && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c.charCodeAt(0) & 0xff);
  }
  return Buffer.from(bytes).toString(enc);
}

/** A stored metadata value from a received header value: bytes read as text, encoded-words decoded. */
export function metadataFromHeader(latin1: string): string {
  const text = headerText(latin1);
  if (!text.includes('=?')) return text;
  // Whitespace between two adjacent encoded-words is not part of the text
  // (RFC 2047 section 6.2).
  const joined = text.replace(/(\?=)\s+(=\?)/g, '$1$2');
  return joined.replace(ENCODED_WORD, (word, cs: string, enc: string, body: string) => decodeWord(cs, enc, body) ?? word);
}

/** The header value for a stored metadata value: as it is when ASCII, else one RFC 2047 B encoded-word of its UTF-8. */
export function metadataToHeader(value: string): string {
  if (!/[^\x00-\x7f]/.test(value)) return value;
  return `=?UTF-8?B?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}
