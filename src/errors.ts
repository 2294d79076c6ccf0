// The one error catalog: every failure the proxy reports is an S3Error built
// from a code in this table, so that the HTTP status and the default message
// cannot drift apart between call sites.
// Codes and statuses follow the S3 API reference, "Error responses"
// (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).

export const S3_ERRORS = {
  AccessDenied: [403, 'Access Denied'],
  AuthorizationQueryParametersError: [400, 'Error parsing the X-Amz-Credential parameter.'],
  AuthorizationHeaderMalformed: [400, 'The authorization header is malformed.'],
  BadDigest: [400, 'The Content-MD5 or checksum you specified did not match what was received.'],
  BucketAlreadyExists: [409, 'The requested bucket name is not available.'],
  BucketAlreadyOwnedByYou: [409, 'Your previous request to create the named bucket succeeded and you already own it.'],
  BucketNotEmpty: [409, 'The bucket you tried to delete is not empty.'],
  EntityTooLarge: [400, 'Your proposed upload exceeds the maximum allowed object size.'],
  EntityTooSmall: [400, 'Your proposed upload is smaller than the minimum allowed object size.'],
  IncompleteBody: [400, 'You did not provide the number of bytes specified by the Content-Length HTTP header.'],
  InternalError: [500, 'We encountered an internal error. Please try again.'],
  InvalidAccessKeyId: [403, 'The AWS access key Id you provided does not exist in our records.'],
  InvalidArgument: [400, 'Invalid Argument'],
  InvalidBucketName: [400, 'The specified bucket is not valid.'],
  InvalidLocationConstraint: [400, 'The specified location-constraint is not valid.'],
  InvalidDigest: [400, 'The Content-MD5 or checksum you specified is not valid.'],
  InvalidPart: [400, 'One or more of the specified parts could not be found.'],
  InvalidPartOrder: [400, 'The list of parts was not in ascending order.'],
  InvalidPartNumber: [416, 'The requested partnumber is not satisfiable'],
  InvalidRange: [416, 'The requested range is not satisfiable'],
  InvalidRequest: [400, 'Invalid Request'],
  InvalidStorageClass: [400, 'The storage class you specified is not valid.'],
  InvalidURI: [400, "Couldn't parse the specified URI."],
  KeyTooLongError: [400, 'Your key is too long'],
  MalformedXML: [400, 'The XML you provided was not well-formed or did not validate against our published schema.'],
  MetadataTooLarge: [400, 'Your metadata headers exceed the maximum allowed metadata size.'],
  MethodNotAllowed: [405, 'The specified method is not allowed against this resource.'],
  MissingContentLength: [411, 'You must provide the Content-Length HTTP header.'],
  MissingSecurityHeader: [400, 'Your request is missing a required header.'],
  NoSuchBucket: [404, 'The specified bucket does not exist'],
  NoSuchKey: [404, 'The specified key does not exist.'],
  NoSuchUpload: [404, 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.'],
  NotImplemented: [501, 'A header or query you provided implies functionality that is not implemented.'],
  NotModified: [304, 'Not Modified'],
  RequestTimeout: [400, 'Your socket connection to the server was not read from or written to within the timeout period.'],
  PreconditionFailed: [412, 'At least one of the pre-conditions you specified did not hold'],
  RequestTimeTooSkewed: [403, "The difference between the request time and the server's time is too large."],
  ServiceUnavailable: [503, 'Please reduce your request rate.'],
  SignatureDoesNotMatch: [403, 'The request signature we calculated does not match the signature you provided. Check your key and signing method.'],
  SlowDown: [503, 'Please reduce your request rate.'],
  XAmzContentSHA256Mismatch: [400, 'The provided x-amz-content-sha256 header does not match what was computed.'],
  ConditionalRequestConflict: [409, 'A conflicting operation occurred. Please retry.'],
} as const satisfies Record<string, readonly [number, string]>;

export type S3ErrorCode = keyof typeof S3_ERRORS;

export class S3Error extends Error {
  readonly code: S3ErrorCode;
  readonly status: number;
  /** Extra elements for the XML body (BucketName, Key, ArgumentName...). */
  readonly fields: Record<string, string>;
  /** Extra response headers (Content-Range on InvalidRange...). */
  readonly headers: Record<string, string>;

  constructor(
    code: S3ErrorCode,
    message?: string,
    opts: { fields?: Record<string, string>; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    const [status, defaultMessage] = S3_ERRORS[code];
    super(message ?? defaultMessage, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'S3Error';
    this.code = code;
    this.status = status;
    this.fields = opts.fields ?? {};
    this.headers = opts.headers ?? {};
  }
}

export function isS3Error(err: unknown, code?: S3ErrorCode): err is S3Error {
  return err instanceof S3Error && (code === undefined || err.code === code);
}

/**
 * Storage-level "no such blob". Backends throw it (translating ENOENT,
 * NoSuchKey, 404) so that the engine never inspects backend-specific errors.
 */
export class NotFoundError extends Error {
  constructor(what: string) {
    super(`not found: ${what}`);
    this.name = 'NotFoundError';
  }
}

/** A conditional backend write (create-only) lost against an existing blob. */
export class AlreadyExistsError extends Error {
  constructor(what: string) {
    super(`already exists: ${what}`);
    this.name = 'AlreadyExistsError';
  }
}

/** A conditional backend write or delete (If-Match) found another version. */
export class PreconditionError extends Error {
  constructor(what: string) {
    super(`precondition failed: ${what}`);
    this.name = 'PreconditionError';
  }
}

/** A bucket still holds live objects (backends raise it from deleteBucket). */
export class NotEmptyError extends Error {
  constructor(what: string) {
    super(`not empty: ${what}`);
    this.name = 'NotEmptyError';
  }
}

/**
 * A bounded resource (the codec pool, a backend's request rate) is full.
 * Backend-neutral: the HTTP edge answers 503 SlowDown with Retry-After.
 */
export class BusyError extends Error {
  constructor(
    what: string,
    /** Seconds after which a retry is worth it. */
    readonly retryAfterSeconds = 1,
  ) {
    super(`busy: ${what}`);
    this.name = 'BusyError';
  }
}
