import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { S3Error } from '../errors.js';

// S3 XML documents. Output is written by a small serializer so that escaping
// is exact (keys may hold '\r', '&', '<' and any Unicode); request bodies are
// parsed with fast-xml-parser.

export const S3_NS = 'http://s3.amazonaws.com/doc/2006-03-01/';

export type XmlValue = string | number | boolean | null | undefined | XmlNode | XmlValue[];
export interface XmlNode {
  [tag: string]: XmlValue;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"'\r]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;', '\r': '&#13;' })[c]!);
}

function render(tag: string, v: XmlValue, out: string[]): void {
  if (v === undefined || v === null) return;
  if (Array.isArray(v)) {
    for (const item of v) render(tag, item, out);
    return;
  }
  if (typeof v === 'object') {
    out.push(`<${tag}>`);
    for (const [k, child] of Object.entries(v)) render(k, child, out);
    out.push(`</${tag}>`);
    return;
  }
  out.push(`<${tag}>${escapeXml(String(v))}</${tag}>`);
}

/** A whole document: `<root xmlns=...>...</root>` with an XML declaration. */
export function xmlDocument(root: string, body: XmlNode, namespace = true): string {
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>\n', namespace ? `<${root} xmlns="${S3_NS}">` : `<${root}>`];
  for (const [k, v] of Object.entries(body)) render(k, v, out);
  out.push(`</${root}>`);
  return out.join('');
}

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: false,
  removeNSPrefix: true,
  processEntities: true,
  // Numeric character references (&#34; &#13;) must decode: rclone quotes
  // ETags as &#34;, and keys may hold characters only a reference can carry.
  htmlEntities: true,
  isArray: (name) => ['Object', 'Part'].includes(name),
});

/** Parses a request document; anything malformed is MalformedXML. */
export function parseXml(text: string): Record<string, unknown> {
  if (text.trim() === '' || XMLValidator.validate(text) !== true) throw new S3Error('MalformedXML');
  try {
    return parser.parse(text) as Record<string, unknown>;
  } catch {
    throw new S3Error('MalformedXML');
  }
}

export const isoDate = (d: Date | string) => new Date(d).toISOString().replace(/\.\d{3}Z$/, '.000Z');
