// What a log may say about a request's authentication: the access key id,
// never a signature, an Authorization header, a credential scope with its
// signature, a session token or a presigned query string (docs/security.md,
// "Secrets"). A presigned URL in a log is a credential anyone reading the log
// can replay until it expires.

/** Query parameters that make a URL replayable (SigV4 and SigV2 query auth). */
const AUTH_PARAMS = new Set([
  'x-amz-algorithm', 'x-amz-credential', 'x-amz-date', 'x-amz-expires', 'x-amz-signedheaders', 'x-amz-signature',
  'x-amz-security-token', 'x-amz-content-sha256', 'awsaccesskeyid', 'signature', 'expires',
]);

function paramName(part: string): string {
  const eq = part.indexOf('=');
  const raw = eq < 0 ? part : part.slice(0, eq);
  if (!raw.includes('%')) return raw.toLowerCase();
  try {
    return decodeURIComponent(raw).toLowerCase();
  } catch {
    return raw.toLowerCase();
  }
}

/** The request target for a log line: the path and the query without its authentication parameters. */
export function logSafeUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const parts = url.slice(q + 1).split('&');
  // Mostly a presigned URL's parameters and nothing else: just the path.
  if (parts.every((p) => p === '' || AUTH_PARAMS.has(paramName(p)))) return url.slice(0, q);
  const kept = parts.filter((p) => p !== '' && !AUTH_PARAMS.has(paramName(p)));
  return `${url.slice(0, q)}?${kept.join('&')}`;
}
