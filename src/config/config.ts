import { existsSync, readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { DEFAULT_DELTA_EXTENSIONS } from '../engine/router.js';

// Configuration: defaults < TOML file < environment < command-line flags.
// One table (SETTINGS) names every key with its env var, parser and default;
// docs/configuration.md and deltaglider-proxy.toml.example list the same keys.

/** A key pair clients sign with, and what it may do. */
export interface KeyGrant {
  accessKeyId: string;
  secretAccessKey: string;
  /** Buckets the key may use; every bucket when absent. */
  buckets?: string[];
  readOnly: boolean;
}

export type AnonymousAccess = 'none' | 'read-only' | 'read-write';

export interface Config {
  listenAddr: string;
  dataDir: string;
  maxDeltaRatio: number;
  cacheSizeMb: number;
  accessKeyId: string;
  secretAccessKey: string;
  deltaExtensions: string[];
  tmpDir: string;
  xdelta3Path: string;
  xdelta3Level: number;
  xdelta3Secondary: string;
  xdelta3MaxWindowMb: number;
  maxObjectSize: number;
  maxDeltaObjectSize: number;
  multipartMaxAgeHours: number;
  virtualHostDomains: string[];
  region: string;
  logLevel: string;
  s3Bucket: string;
  s3Endpoint: string;
  s3Region: string;
  s3ForcePathStyle: boolean;
  s3Prefix: string;
  s3AccessKeyId: string;
  s3SecretAccessKey: string;
  /** backend.s3_idle_timeout_secs: a backend request idle this long fails (then retried, then 503). */
  s3IdleTimeoutSecs: number;
  /** backend.cli_buckets: proxy buckets kept in the DeltaGlider CLI's layout, `name` or `name=backend-bucket`. */
  cliBuckets: string[];
  /** [[auth.keys]] of the TOML file. */
  authKeys: KeyGrant[];
  /** [auth] anonymous: unsigned requests are refused unless this says otherwise. */
  anonymous: AnonymousAccess;
  /** Sidecar format written: 2, or 1 while instances of the first release share the backend. */
  storageFormat: number;
  blobGraceSeconds: number;
  gcOrphanAgeMinutes: number;
  gcSweepHours: number;
  decodedCacheMb: number;
  /** Delta encoding on the PUT (inline) or after it (background, src/engine/compaction.ts). */
  compaction: 'inline' | 'background';
  /** Objects waiting for background compaction beyond which PUTs encode inline. */
  compactionBacklog: number;
  /** Write the gzip stored form (src/engine/gzip-form.ts); reading it never depends on this. */
  gzipForm: boolean;
  /** [auth] sigv2: accept AWS Signature Version 2 (HMAC-SHA1) from legacy clients. */
  authSigv2: boolean;
  /** xdelta3 processes at a time; 0 = CPU count. */
  codecMaxProcesses: number;
  codecMemoryMb: number;
  codecQueueLength: number;
  codecSpoolMb: number;
  bodyIdleTimeoutSecs: number;
  sendIdleTimeoutSecs: number;
  shutdownTimeoutSecs: number;
  tlsCertFile: string;
  tlsKeyFile: string;
  /** Request log lines: JSON, readable, or readable only on a terminal. */
  logFormat: 'auto' | 'json' | 'pretty';
  /** [metrics] token: bearer token /_/metrics requires ('' = none accepted). */
  metricsToken: string;
  /** [metrics] public: /_/metrics open to anyone. */
  metricsPublic: boolean;
  /** [console] enabled: the web console and its API under /_/. */
  consoleEnabled: boolean;
  /** [console] allow_http: sign-in over plain HTTP from other hosts than loopback. */
  consoleAllowHttp: boolean;
  /** [console] session_minutes: lifetime of a console session. */
  consoleSessionMinutes: number;
}

/**
 * The documented development key pair (docs/configuration.md), used when no
 * pair is configured so that a first run works with any S3 client. It is
 * public: never expose a proxy running with it.
 */
export const DEV_ACCESS_KEY_ID = 'DGPDEVELOPMENTKEY000';
export const DEV_SECRET_ACCESS_KEY = 'deltaglider-proxy-development-secret-key';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Parses a raw value. `raw` is a string from the environment or a flag, or a
 * TOML value; TOML values must already have the setting's type (see `kind`).
 */
type Parser<T> = ((raw: unknown, key: string) => T) & { kind?: TomlKind };
type TomlKind = 'string' | 'number' | 'boolean' | 'array';

const kinded = <T>(kind: TomlKind, p: (raw: unknown, key: string) => T): Parser<T> => Object.assign(p, { kind });

const fail = (key: string, raw: unknown, allowed: string): never => {
  throw new ConfigError(`invalid ${key} = ${JSON.stringify(raw)}: ${allowed}`);
};

const str: Parser<string> = kinded('string', (raw, key) => (typeof raw === 'string' ? raw : fail(key, raw, 'expected a string')));

const num = (min: number, max: number, integer = false): Parser<number> => kinded('number', (raw, key) => {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  const allowed = `expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`;
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) fail(key, raw, allowed);
  return n;
});

const bool: Parser<boolean> = kinded('boolean', (raw, key) => {
  if (typeof raw === 'boolean') return raw;
  if (typeof raw === 'string' && /^(true|false|1|0|yes|no)$/i.test(raw.trim())) return /^(true|1|yes)$/i.test(raw.trim());
  return fail(key, raw, 'expected true or false');
});

const list: Parser<string[]> = kinded('array', (raw, key) => {
  if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return raw as string[];
  if (typeof raw === 'string') return raw.split(',').map((s) => s.trim()).filter(Boolean);
  return fail(key, raw, 'expected a list of strings (comma-separated in env)');
});

const oneOf = (...values: string[]): Parser<string> => kinded('string', (raw, key) =>
  typeof raw === 'string' && values.includes(raw) ? raw : fail(key, raw, `expected one of ${values.join(', ')}`));

const listenAddr: Parser<string> = kinded('string', (raw, key) => {
  const s = str(raw, key);
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535) fail(key, raw, 'expected HOST:PORT, e.g. 127.0.0.1:9000');
  return s;
});

const TOML_TYPE_HELP: Record<TomlKind, string> = {
  string: 'a string in quotes',
  number: 'a number without quotes',
  boolean: 'true or false without quotes',
  array: 'a list, e.g. [".zip", ".tar"]',
};

/** A TOML value must have the setting's type: `delta_extensions = "zip"` is refused. */
function checkTomlType(parse: Parser<unknown>, raw: unknown, key: string): void {
  const kind = parse.kind;
  if (!kind) return;
  const ok = kind === 'array' ? Array.isArray(raw) : typeof raw === kind;
  if (!ok) fail(key, raw, `expected ${TOML_TYPE_HELP[kind]}`);
}

interface Setting<K extends keyof Config> {
  field: K;
  toml: string;
  env: string;
  parse: Parser<Config[K]>;
  default: Config[K] | ((c: Config) => Config[K]);
}

function setting<K extends keyof Config>(field: K, toml: string, parse: Parser<Config[K]>, def: Setting<K>['default']): Setting<K> {
  return { field, toml, env: `DELTAGLIDER_PROXY_${toml.toUpperCase()}`, parse, default: def };
}

export const SETTINGS = [
  setting('listenAddr', 'listen_addr', listenAddr, '127.0.0.1:9000'),
  setting('dataDir', 'data_dir', str, './data'),
  setting('maxDeltaRatio', 'max_delta_ratio', num(0, 1), 0.5),
  setting('cacheSizeMb', 'cache_size_mb', num(0, 1 << 20, true), 100),
  setting('accessKeyId', 'access_key_id', str, ''),
  setting('secretAccessKey', 'secret_access_key', str, ''),
  setting('deltaExtensions', 'delta_extensions', list, DEFAULT_DELTA_EXTENSIONS),
  setting('tmpDir', 'tmp_dir', str, ''),
  setting('xdelta3Path', 'xdelta3_path', str, 'xdelta3'),
  setting('xdelta3Level', 'xdelta3_level', num(0, 9, true), 9),
  setting('xdelta3Secondary', 'xdelta3_secondary', oneOf('default', 'none', 'djw', 'fgk', 'lzma'), 'default'),
  setting('xdelta3MaxWindowMb', 'xdelta3_max_window_mb', num(1, 2048, true), 2048),
  setting('maxObjectSize', 'max_object_size', num(0, 5 * 1024 ** 4, true), 5 * 1024 ** 4),
  setting('maxDeltaObjectSize', 'max_delta_object_size', num(0, 5 * 1024 ** 4, true), 4 * 1024 ** 3),
  setting('multipartMaxAgeHours', 'multipart_max_age_hours', num(0.001, 24 * 365), 168),
  setting('virtualHostDomains', 'virtual_host_domains', list, ['localhost']),
  setting('region', 'region', str, 'us-east-1'),
  setting('logLevel', 'log_level', oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'), 'info'),
  { ...setting('s3Bucket', 'backend.s3_bucket', str, ''), env: 'DELTAGLIDER_PROXY_S3_BUCKET' },
  { ...setting('s3Endpoint', 'backend.s3_endpoint', str, ''), env: 'DELTAGLIDER_PROXY_S3_ENDPOINT' },
  { ...setting('s3Region', 'backend.s3_region', str, 'us-east-1'), env: 'DELTAGLIDER_PROXY_S3_REGION' },
  { ...setting('s3ForcePathStyle', 'backend.s3_force_path_style', bool, (c: Config) => c.s3Endpoint !== ''), env: 'DELTAGLIDER_PROXY_S3_FORCE_PATH_STYLE' },
  { ...setting('s3Prefix', 'backend.s3_prefix', str, ''), env: 'DELTAGLIDER_PROXY_S3_PREFIX' },
  { ...setting('s3AccessKeyId', 'backend.s3_access_key_id', str, ''), env: 'DELTAGLIDER_PROXY_S3_ACCESS_KEY_ID' },
  { ...setting('s3SecretAccessKey', 'backend.s3_secret_access_key', str, ''), env: 'DELTAGLIDER_PROXY_S3_SECRET_ACCESS_KEY' },
  { ...setting('s3IdleTimeoutSecs', 'backend.s3_idle_timeout_secs', num(0.1, 3600), 120), env: 'DELTAGLIDER_PROXY_S3_IDLE_TIMEOUT_SECS' },
  { ...setting('cliBuckets', 'backend.cli_buckets', list, []), env: 'DELTAGLIDER_PROXY_CLI_BUCKETS' },
  setting('codecMaxProcesses', 'codec_max_processes', num(0, 1024, true), 0),
  setting('codecMemoryMb', 'codec_memory_mb', num(64, 1 << 20, true), 1024),
  setting('codecQueueLength', 'codec_queue_length', num(0, 1 << 20, true), 256),
  setting('codecSpoolMb', 'codec_spool_mb', num(0, 1 << 30, true), 1024),
  setting('bodyIdleTimeoutSecs', 'body_idle_timeout_secs', num(1, 3600), 20),
  setting('sendIdleTimeoutSecs', 'send_idle_timeout_secs', num(1, 3600), 60),
  setting('shutdownTimeoutSecs', 'shutdown_timeout_secs', num(0, 3600), 30),
  setting('tlsCertFile', 'tls_cert_file', str, ''),
  setting('tlsKeyFile', 'tls_key_file', str, ''),
  setting('logFormat', 'log_format', oneOf('auto', 'json', 'pretty') as Parser<Config['logFormat']>, 'auto'),
  { ...setting('metricsToken', 'metrics.token', str, ''), env: 'DELTAGLIDER_PROXY_METRICS_TOKEN' },
  { ...setting('metricsPublic', 'metrics.public', bool, false), env: 'DELTAGLIDER_PROXY_METRICS_PUBLIC' },
  { ...setting('consoleEnabled', 'console.enabled', bool, true), env: 'DELTAGLIDER_PROXY_CONSOLE_ENABLED' },
  { ...setting('consoleAllowHttp', 'console.allow_http', bool, false), env: 'DELTAGLIDER_PROXY_CONSOLE_ALLOW_HTTP' },
  { ...setting('consoleSessionMinutes', 'console.session_minutes', num(1, 7 * 24 * 60, true), 60), env: 'DELTAGLIDER_PROXY_CONSOLE_SESSION_MINUTES' },
  { ...setting('anonymous', 'auth.anonymous', oneOf('none', 'read-only', 'read-write') as Parser<AnonymousAccess>, 'none'), env: 'DELTAGLIDER_PROXY_AUTH_ANONYMOUS' },
  setting('storageFormat', 'storage_format', num(1, 2, true), 2),
  setting('blobGraceSeconds', 'blob_grace_seconds', num(0, 86400), 60),
  setting('gcOrphanAgeMinutes', 'gc_orphan_age_minutes', num(1, 7 * 24 * 60), 60),
  setting('gcSweepHours', 'gc_sweep_hours', num(0, 24 * 365), 24),
  setting('decodedCacheMb', 'decoded_cache_mb', num(0, 1 << 30, true), 1024),
  setting('compaction', 'compaction', oneOf('inline', 'background') as Parser<Config['compaction']>, 'inline'),
  setting('compactionBacklog', 'compaction_backlog', num(0, 1 << 20, true), 256),
  setting('gzipForm', 'gzip_form', bool, true),
  { ...setting('authSigv2', 'auth.sigv2', bool, true), env: 'DELTAGLIDER_PROXY_AUTH_SIGV2' },
] as const;

/** Parses the [[auth.keys]] array of tables. */
function parseKeys(raw: unknown): KeyGrant[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new ConfigError('auth.keys must be an array of tables ([[auth.keys]])');
  return raw.map((k: Record<string, unknown>, i) => {
    const where = `auth.keys[${i}]`;
    const known = ['access_key_id', 'secret_access_key', 'buckets', 'read_only'];
    for (const name of Object.keys(k)) if (!known.includes(name)) throw new ConfigError(`unknown key ${name} in ${where} (allowed: ${known.join(', ')})`);
    const id = k.access_key_id;
    const secret = k.secret_access_key;
    if (typeof id !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(id) || id.includes('/')) {
      throw new ConfigError(`invalid ${where}.access_key_id: expected 1 to 128 printable characters without '/'`);
    }
    if (typeof secret !== 'string' || secret.length === 0) throw new ConfigError(`invalid ${where}.secret_access_key: expected a non-empty string`);
    const buckets = k.buckets === undefined ? undefined : (checkTomlType(list, k.buckets, `${where}.buckets`), list(k.buckets, `${where}.buckets`));
    const readOnly = k.read_only ?? false;
    if (typeof readOnly !== 'boolean') throw new ConfigError(`invalid ${where}.read_only: expected true or false`);
    return { accessKeyId: id, secretAccessKey: secret, buckets, readOnly };
  });
}

/** Looks up a dotted TOML key ('auth.anonymous') in the parsed table. */
function lookup(table: Record<string, unknown>, dotted: string): unknown {
  let cur: unknown = table;
  for (const part of dotted.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

export interface Sources {
  argv?: string[];
  env?: Record<string, string | undefined>;
  /** For tests: a TOML document instead of a file. */
  toml?: string;
}

export type CliAction = { action: 'run'; config: Config; configFile?: string; warnings: string[] } | { action: 'help' } | { action: 'version' };

/** DELTAGLIDER_PROXY_* variables read outside SETTINGS (not warned about). */
export const OTHER_ENV = new Set(['DELTAGLIDER_PROXY_CONFIG']);

/** One warning per DELTAGLIDER_PROXY_* variable no setting reads (a typo would otherwise go unnoticed). */
function unknownEnv(env: Record<string, string | undefined>): string[] {
  const known = new Set<string>([...SETTINGS.map((s) => s.env), ...OTHER_ENV]);
  const out: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('DELTAGLIDER_PROXY_') || known.has(name)) continue;
    const near = [...known].find((k) => editDistance(k, name) <= 2);
    out.push(`unknown environment variable ${name} is ignored${near ? ` (did you mean ${near}?)` : ''}; every variable: docs/configuration.md`);
  }
  return out;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

const FLAGS: Record<string, keyof Config | 'config'> = {
  '--listen': 'listenAddr',
  '-l': 'listenAddr',
  '--data-dir': 'dataDir',
  '-d': 'dataDir',
  '--config': 'config',
  '-c': 'config',
};

export const HELP = `deltaglider-proxy: an S3-compatible server that stores versioned artifacts as xdelta3 deltas

Usage: deltaglider-proxy [options]
       deltaglider-proxy scrub [s3://bucket[/prefix]] [--json] [options]
         reads every object and reference back and checks it against its
         digests (no running server needed; exit code 1 when damage is found)
       deltaglider-proxy stats [s3://BUCKET[/PREFIX]] [--json] [options]
       deltaglider-proxy migrate s3://cli-bucket[/prefix] [s3://proxy-bucket] [--json] [options]
         copies a bucket in the DeltaGlider CLI's layout (backend.cli_buckets)
         into the native format, verifying every object; resumable

Options:
  -l, --listen HOST:PORT   listen address (DELTAGLIDER_PROXY_LISTEN_ADDR, default 127.0.0.1:9000)
  -d, --data-dir DIR       filesystem backend directory (DELTAGLIDER_PROXY_DATA_DIR, default ./data)
  -c, --config FILE        TOML config file (DELTAGLIDER_PROXY_CONFIG, default ./deltaglider-proxy.toml if present)
  -h, --help               print this help
  -V, --version            print the version

Every setting and its environment variable: docs/configuration.md.
`;

/** Resolves the configuration from all sources, or the help/version action. */
export function loadConfig(src: Sources = {}): CliAction {
  const env = src.env ?? {};
  const flags: Partial<Record<keyof Config | 'config', string>> = {};
  const argv = src.argv ?? [];
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    if (arg === '-h' || arg === '--help') return { action: 'help' };
    if (arg === '-V' || arg === '--version') return { action: 'version' };
    let value: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const field = FLAGS[arg];
    if (!field) throw new ConfigError(`unknown option ${arg} (see --help)`);
    value ??= argv[++i];
    if (value === undefined) throw new ConfigError(`option ${arg} needs a value`);
    flags[field] = value;
  }

  let file = flags.config ?? env.DELTAGLIDER_PROXY_CONFIG;
  let table: Record<string, unknown> = {};
  if (src.toml !== undefined) table = parseTomlText(src.toml, '<inline>');
  else {
    if (!file && existsSync('deltaglider-proxy.toml')) file = 'deltaglider-proxy.toml';
    if (file) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
      }
      table = parseTomlText(text, file);
    }
  }
  const known = new Set<string>(SETTINGS.map((s) => s.toml));
  const tables: Record<string, string[]> = {
    auth: ['keys', 'anonymous', 'sigv2'],
    metrics: ['token', 'public'],
    console: ['enabled', 'allow_http', 'session_minutes'],
    backend: ['s3_bucket', 's3_endpoint', 's3_region', 's3_force_path_style', 's3_prefix', 's3_access_key_id', 's3_secret_access_key', 's3_idle_timeout_secs', 'cli_buckets'],
  };
  for (const [k, v] of Object.entries(table)) {
    if (known.has(k)) continue;
    if (tables[k] && typeof v === 'object' && v !== null && !Array.isArray(v)) {
      for (const sub of Object.keys(v)) if (!tables[k].includes(sub)) throw new ConfigError(`unknown key ${k}.${sub} in ${file ?? 'config'}`);
      continue;
    }
    throw new ConfigError(`unknown key ${k} in ${file ?? 'config'}`);
  }

  const config = {} as Config;
  const deferred: Setting<keyof Config>[] = [];
  for (const s of SETTINGS as readonly Setting<keyof Config>[]) {
    const flag = flags[s.field];
    const raw = flag ?? env[s.env] ?? lookup(table, s.toml);
    const label = flag !== undefined ? `flag for ${s.toml}` : env[s.env] !== undefined ? s.env : s.toml;
    if (raw !== undefined && flag === undefined && env[s.env] === undefined) checkTomlType(s.parse as Parser<unknown>, raw, label);
    if (raw !== undefined) (config as unknown as Record<string, unknown>)[s.field] = s.parse(raw, label);
    else if (typeof s.default === 'function') deferred.push(s);
    else (config as unknown as Record<string, unknown>)[s.field] = s.default;
  }
  for (const s of deferred) (config as unknown as Record<string, unknown>)[s.field] = (s.default as (c: Config) => unknown)(config);
  config.authKeys = parseKeys(lookup(table, 'auth.keys'));
  if (!!config.s3AccessKeyId !== !!config.s3SecretAccessKey) {
    throw new ConfigError('backend.s3_access_key_id and backend.s3_secret_access_key must be set together (DELTAGLIDER_PROXY_S3_ACCESS_KEY_ID / DELTAGLIDER_PROXY_S3_SECRET_ACCESS_KEY)');
  }
  cliBucketMap(config);
  if (config.s3Prefix.startsWith('/')) throw new ConfigError('invalid backend.s3_prefix: must not start with "/"');
  if (!!config.accessKeyId !== !!config.secretAccessKey) {
    throw new ConfigError('access_key_id and secret_access_key must be set together (DELTAGLIDER_PROXY_ACCESS_KEY_ID / DELTAGLIDER_PROXY_SECRET_ACCESS_KEY)');
  }
  if (!!config.tlsCertFile !== !!config.tlsKeyFile) {
    throw new ConfigError('tls_cert_file and tls_key_file must be set together (DELTAGLIDER_PROXY_TLS_CERT_FILE / DELTAGLIDER_PROXY_TLS_KEY_FILE)');
  }
  return { action: 'run', config, configFile: file, warnings: unknownEnv(env) };
}

/**
 * backend.cli_buckets as proxy bucket -> backend bucket. Each entry is `name`
 * (the backend bucket of the same name) or `name=backend-bucket`; S3 backend only.
 */
export function cliBucketMap(config: Pick<Config, 'cliBuckets' | 's3Bucket'>): Map<string, string> {
  const map = new Map<string, string>();
  const valid = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
  for (const entry of config.cliBuckets) {
    const [name, backend = name, extra] = entry.split('=').map((x) => x.trim());
    if (extra !== undefined || !valid.test(name) || !valid.test(backend)) {
      throw new ConfigError(`invalid backend.cli_buckets entry ${JSON.stringify(entry)}: expected "bucket" or "bucket=backend-bucket" (S3 bucket names)`);
    }
    if (map.has(name)) throw new ConfigError(`backend.cli_buckets names ${name} twice`);
    if (backend === config.s3Bucket) throw new ConfigError(`backend.cli_buckets: ${backend} is the backend bucket of the native layout (backend.s3_bucket)`);
    map.set(name, backend);
  }
  if (map.size > 0 && !config.s3Bucket) throw new ConfigError('backend.cli_buckets needs the S3 backend (backend.s3_bucket)');
  return map;
}

function parseTomlText(text: string, name: string): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`cannot parse ${name}: ${(err as Error).message}`);
  }
}

/** Defaults for everything, with overrides: for tests and embedding. */
export function defaultConfig(over: Partial<Config> = {}): Config {
  const r = loadConfig({ toml: '' });
  if (r.action !== 'run') throw new Error('unreachable');
  return { ...r.config, ...over };
}
