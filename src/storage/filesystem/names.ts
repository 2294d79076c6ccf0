// Mapping of blob names to relative filesystem paths, and back.
//
// S3 keys may hold segments a filesystem cannot: '', '.', '..', control
// characters, segments longer than NAME_MAX (255 bytes). A blob name is split
// on '/', and each segment is escaped so that every valid key maps to exactly
// one path below the bucket directory and back (documented in
// docs/storage-format.md, "Filesystem layout"):
//
//   - '%' and control characters become %XX (upper-case hex);
//   - an empty segment becomes '%', '.' becomes '%2E', '..' becomes '%2E%2E';
//   - a directory segment ending in a suffix the engine gives files
//     (.delta .direct .meta .bin) gets a trailing '%', so that the directory of
//     key 'a.delta/x' never collides with the file of key 'a' ('a.delta');
//   - an escaped segment longer than SEGMENT_MAX bytes is cut into pieces; every
//     piece but the last is a directory named '<piece>%+'.
//
// Names starting with '%%' never come out of this mapping: the backend keeps
// its own files (temp files, bucket record) under such names.

export const SEGMENT_MAX = 200;
export const INTERNAL_PREFIX = '%%';
const RESERVED_FILE_SUFFIXES = ['.delta', '.direct', '.meta', '.bin'];

function escapeChars(seg: string): string {
  // eslint-disable-next-line no-control-regex
  return seg.replace(/[%\x00-\x1f\x7f]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
}

/** Splits an escaped segment into pieces of at most SEGMENT_MAX bytes. */
function cut(escaped: string): string[] {
  if (Buffer.byteLength(escaped) <= SEGMENT_MAX) return [escaped];
  const pieces: string[] = [];
  let cur = '';
  let curBytes = 0;
  // Iterate by escape unit or whole code point so that neither is split.
  const units = escaped.match(/%[0-9A-F]{2}|[\s\S]/gu) ?? [];
  for (const u of units) {
    const b = Buffer.byteLength(u);
    if (curBytes + b > SEGMENT_MAX) {
      pieces.push(cur);
      cur = '';
      curBytes = 0;
    }
    cur += u;
    curBytes += b;
  }
  pieces.push(cur);
  return pieces;
}

export function encodeSegment(seg: string, isDir: boolean): string[] {
  if (seg === '') return ['%'];
  if (seg === '.') return ['%2E'];
  if (seg === '..') return ['%2E%2E'];
  const pieces = cut(escapeChars(seg));
  const last = pieces.length - 1;
  const out = pieces.map((p, i) => (i < last ? p + '%+' : p));
  if (isDir && RESERVED_FILE_SUFFIXES.some((s) => seg.endsWith(s))) out[last] += '%';
  return out;
}

/** Relative path components for a blob name. */
export function encodeName(name: string): string[] {
  const segs = name.split('/');
  const out: string[] = [];
  segs.forEach((s, i) => out.push(...encodeSegment(s, i < segs.length - 1)));
  return out;
}

/** Components of the directory holding every name that starts with `prefix`. */
export function encodePrefixDir(prefix: string): string[] {
  const segs = prefix.split('/');
  segs.pop(); // the last segment is partial (or '' after a trailing '/')
  const out: string[] = [];
  for (const s of segs) out.push(...encodeSegment(s, true));
  return out;
}

function unescape(piece: string): string {
  return piece.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/**
 * Decodes path components back into a blob name. Returns null for paths this
 * mapping never produces (internal files, foreign files).
 */
export function decodeComponents(components: string[]): string | null {
  let name = '';
  for (let i = 0; i < components.length; i++) {
    let c = components[i];
    if (c.startsWith(INTERNAL_PREFIX)) return null;
    if (c.endsWith('%+')) {
      name += unescape(c.slice(0, -2));
      continue;
    }
    if (c === '%') c = '';
    else if (c.endsWith('%') && !/%[0-9A-F]{2}$/.test(c)) c = c.slice(0, -1);
    name += unescape(c);
    if (i < components.length - 1) name += '/';
  }
  return name;
}

/** Bytes of the longest escape unit or code point, the most a cut can leave unused (cut()). */
const MAX_UNIT_BYTES = 4;

/**
 * Where a continuation piece cut from a decoded segment could end: the
 * lengths (UTF-16 units) of its prefixes whose escaped form is too close to
 * SEGMENT_MAX bytes to take one more unit. At most MAX_UNIT_BYTES of them, so
 * a lister can look each up instead of scanning its neighbours.
 */
export function pieceEnds(seg: string): number[] {
  const ends: number[] = [];
  let bytes = 0;
  let len = 0;
  for (const c of seg) {
    // eslint-disable-next-line no-control-regex
    bytes += /^[%\x00-\x1f\x7f]$/.test(c) ? 3 : Buffer.byteLength(c);
    len += c.length;
    if (bytes > SEGMENT_MAX) break;
    if (bytes > SEGMENT_MAX - MAX_UNIT_BYTES) ends.push(len);
  }
  return ends;
}
