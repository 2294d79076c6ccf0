import type { PlainStore } from '../../storage/plain.js';
import { compareKeys, paginate, type Page } from '../listing.js';
import type { ListInput } from '../list.js';
import { DELTA_SUFFIX, userKeyOf } from './names.js';

// Listing a bucket in the CLI layout: user keys come from stored names K and
// K.delta, so they sort differently from the names S3 lists. A key x is
// placed once the listing has passed every name that could still produce a
// key before it: `y.delta` for each prefix y of x followed by a character up
// to '.', and x.delta itself (the rule of ../list.ts, with ".delta" as the
// suffix).

const LAST_CHAR = '\u{10FFFF}';

export function cliReleasePoint(x: string): string {
  let point = x + DELTA_SUFFIX;
  for (let i = 1; i < x.length; i++) {
    if (x[i] <= '.') {
      const p = x.slice(0, i) + DELTA_SUFFIX;
      if (compareKeys(p, point) > 0) point = p;
    }
  }
  return point;
}

export interface CliSeen {
  /** user key -> stored names seen for it (K and/or K.delta). */
  names: Map<string, string[]>;
  page: Page;
}

/** One page of user keys, streaming the backend listing from the marker on. */
export async function listCliPage(store: PlainStore, backendBucket: string, input: Omit<ListInput, 'bucket'>, signal?: AbortSignal): Promise<CliSeen> {
  const names = new Map<string, string[]>();
  const pending: string[] = [];
  const released: string[] = [];
  const release = (upTo?: string) => {
    while (pending.length > 0 && (upTo === undefined || compareKeys(cliReleasePoint(pending[0]), upTo) <= 0)) released.push(pending.shift()!);
  };
  let startAfter = compareKeys(input.after, input.prefix) > 0 ? input.after : undefined;
  const d = input.delimiter;
  if (startAfter && d && startAfter.startsWith(input.prefix) && startAfter.indexOf(d, input.prefix.length) === startAfter.length - d.length) startAfter += LAST_CHAR;
  let checked = 0;
  for (;;) {
    let skipTo: string | undefined;
    for await (const o of store.list(backendBucket, { prefix: input.prefix, startAfter, signal })) {
      const key = userKeyOf(o.name);
      if (key !== null && compareKeys(key, input.after) > 0 && key.startsWith(input.prefix)) {
        const seen = names.get(key);
        if (seen) seen.push(o.name);
        else {
          names.set(key, [o.name]);
          let at = pending.length;
          while (at > 0 && compareKeys(pending[at - 1], key) > 0) at--;
          pending.splice(at, 0, key);
        }
      }
      release(o.name);
      if (released.length > checked) {
        checked = released.length;
        const page = paginate(released, input);
        if (page.truncated) return { names, page };
        const last = page.commonPrefixes[page.commonPrefixes.length - 1];
        if (last !== undefined && released[released.length - 1].startsWith(last) && pending.every((p) => p.startsWith(last))) {
          pending.length = 0;
          skipTo = last + LAST_CHAR;
          break;
        }
      }
    }
    if (skipTo === undefined) break;
    startAfter = skipTo;
  }
  release();
  return { names, page: paginate(released, input) };
}
