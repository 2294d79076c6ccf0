// Pagination of a sorted key list into an S3 listing page: prefix, delimiter
// roll-up into CommonPrefixes, a start-after marker, and max-keys counting
// keys and common prefixes alike (ListObjectsV2 reference, "MaxKeys").

/** S3 lists keys in UTF-8 binary order, which is code point order. */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length < b.length ? -1 : 1;
}

export interface PageRequest {
  prefix: string;
  delimiter: string;
  /** Exclusive lower bound: a key or a common prefix returned earlier. */
  after: string;
  maxKeys: number;
}

export interface Page {
  keys: string[];
  commonPrefixes: string[];
  truncated: boolean;
  /** The last key or common prefix of the page, for the next marker. */
  last?: string;
}

export function paginate(sorted: readonly string[], req: PageRequest): Page {
  const page: Page = { keys: [], commonPrefixes: [], truncated: false };
  const from = Math.max(firstAbove(sorted, req.after, false), firstAbove(sorted, req.prefix, true));
  let lastPrefix: string | undefined;
  for (let i = from; i < sorted.length; i++) {
    const key = sorted[i];
    if (!key.startsWith(req.prefix)) break;
    let cp: string | undefined;
    if (req.delimiter) {
      const at = key.indexOf(req.delimiter, req.prefix.length);
      if (at >= 0) cp = key.slice(0, at + req.delimiter.length);
    }
    if (cp !== undefined && (cp === lastPrefix || cp === req.after)) continue;
    if (page.keys.length + page.commonPrefixes.length >= req.maxKeys) {
      page.truncated = req.maxKeys > 0;
      break;
    }
    if (cp !== undefined) {
      page.commonPrefixes.push(cp);
      lastPrefix = cp;
      page.last = cp;
    } else {
      page.keys.push(key);
      page.last = key;
    }
  }
  return page;
}

/** Index of the first key above `bound` (or at it, when `inclusive`). */
function firstAbove(sorted: readonly string[], bound: string, inclusive: boolean): number {
  if (bound === '') return 0;
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const c = compareKeys(sorted[mid], bound);
    if (c < 0 || (c === 0 && !inclusive)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
