import t from 'tap';
import { ConfigError, SETTINGS, loadConfig } from '../src/config/config.js';
import { engineOptions } from '../src/app.js';

const run = (src: Parameters<typeof loadConfig>[0]) => {
  const r = loadConfig({ toml: '', ...src });
  if (r.action !== 'run') throw new Error(r.action);
  return r.config;
};

t.test('defaults', async (t) => {
  const c = run({});
  t.equal(c.listenAddr, '127.0.0.1:9000');
  t.equal(c.dataDir, './data');
  t.equal(c.maxDeltaRatio, 0.5);
  t.equal(c.cacheSizeMb, 100);
  t.equal(c.tmpDir, '', 'automatic: an instance directory below <data_dir>/.deltaglider, or below the system temp dir with the S3 backend');
  t.equal(c.s3Bucket, '');
  t.equal(c.s3ForcePathStyle, false);
  t.equal(run({ env: { DELTAGLIDER_PROXY_S3_ENDPOINT: 'http://minio:9000' } }).s3ForcePathStyle, true, 'path style by default with a custom endpoint');
  t.equal(run({ env: { DELTAGLIDER_PROXY_S3_FORCE_PATH_STYLE: 'false', DELTAGLIDER_PROXY_S3_ENDPOINT: 'http://x' } }).s3ForcePathStyle, false);
  t.equal(run({ toml: '[backend]\ns3_bucket = "b"\ns3_prefix = "p/"' }).s3Prefix, 'p/');
  t.throws(() => run({ toml: '[backend]\nbucket = "b"' }), { message: /unknown key backend.bucket/ });
  t.throws(() => run({ env: { DELTAGLIDER_PROXY_S3_FORCE_PATH_STYLE: 'maybe' } }), { message: /true or false/ });
  // The gzip form's switch reaches the engine.
  t.equal(c.gzipForm, true);
  t.same(engineOptions(run({ toml: 'gzip_form = false' })).gzip, { enabled: false });
  t.same(engineOptions(run({ env: { DELTAGLIDER_PROXY_GZIP_FORM: 'false' } })).gzip, { enabled: false });
});

t.test('precedence: defaults < TOML < env < flags', async (t) => {
  const toml = 'listen_addr = "0.0.0.0:1"\ndata_dir = "/toml"\nmax_delta_ratio = 0.3\ncache_size_mb = 7';
  const env = { DELTAGLIDER_PROXY_LISTEN_ADDR: '0.0.0.0:2', DELTAGLIDER_PROXY_MAX_DELTA_RATIO: '0.2' };
  const c = run({ toml, env, argv: ['--listen', '0.0.0.0:3'] });
  t.equal(c.listenAddr, '0.0.0.0:3');
  t.equal(c.maxDeltaRatio, 0.2);
  t.equal(c.dataDir, '/toml');
  t.equal(c.cacheSizeMb, 7);
  t.equal(run({ argv: ['--data-dir=/flag'] }).dataDir, '/flag');
});

t.test('env names', async (t) => {
  const envs = SETTINGS.map((s) => s.env);
  for (const name of ['DELTAGLIDER_PROXY_LISTEN_ADDR', 'DELTAGLIDER_PROXY_DATA_DIR', 'DELTAGLIDER_PROXY_MAX_DELTA_RATIO', 'DELTAGLIDER_PROXY_CACHE_SIZE_MB', 'DELTAGLIDER_PROXY_ACCESS_KEY_ID', 'DELTAGLIDER_PROXY_SECRET_ACCESS_KEY']) {
    t.ok(envs.includes(name), name);
  }
  const c = run({ env: { DELTAGLIDER_PROXY_ACCESS_KEY_ID: 'AK', DELTAGLIDER_PROXY_SECRET_ACCESS_KEY: 'SK', DELTAGLIDER_PROXY_DELTA_EXTENSIONS: '.zip, .foo' } });
  t.equal(c.accessKeyId, 'AK');
  t.same(c.deltaExtensions, ['.zip', '.foo']);
});

t.test('bad values name the key and what is allowed', async (t) => {
  t.throws(() => run({ env: { DELTAGLIDER_PROXY_MAX_DELTA_RATIO: '2' } }), { message: /DELTAGLIDER_PROXY_MAX_DELTA_RATIO.*from 0 to 1/ });
  t.throws(() => run({ env: { DELTAGLIDER_PROXY_CACHE_SIZE_MB: 'lots' } }), { message: /CACHE_SIZE_MB.*integer/ });
  t.throws(() => run({ argv: ['--listen', 'nope'] }), { message: /listen_addr.*HOST:PORT/ });
  t.throws(() => run({ toml: 'max_delta_ratio = "x"' }), ConfigError);
  t.throws(() => run({ toml: 'no_such_key = 1' }), { message: /unknown key no_such_key/ });
  t.throws(() => run({ toml: 'this is = not toml' }), { message: /cannot parse/ });
  t.throws(() => run({ argv: ['--bogus'] }), { message: /unknown option/ });
  t.throws(() => run({ argv: ['--listen'] }), { message: /needs a value/ });
  t.throws(() => run({ env: { DELTAGLIDER_PROXY_ACCESS_KEY_ID: 'only-one' } }), { message: /together/ });
  t.throws(() => loadConfig({ argv: ['--config', '/no/such/file.toml'] }), { message: /cannot read config file/ });
});

t.test('help and version', async (t) => {
  t.equal(loadConfig({ argv: ['--help'] }).action, 'help');
  t.equal(loadConfig({ argv: ['-V'] }).action, 'version');
});

t.test('[[auth.keys]] and [auth]', async (t) => {
  const c = run({
    toml: `[auth]\nanonymous = "read-only"\n[[auth.keys]]\naccess_key_id = "a"\nsecret_access_key = "s"\nbuckets = ["x", "y"]\n[[auth.keys]]\naccess_key_id = "b"\nsecret_access_key = "t"\nread_only = true\n`,
  });
  t.equal(c.anonymous, 'read-only');
  t.same(c.authKeys, [
    { accessKeyId: 'a', secretAccessKey: 's', buckets: ['x', 'y'], readOnly: false },
    { accessKeyId: 'b', secretAccessKey: 't', buckets: undefined, readOnly: true },
  ]);
  t.equal(run({ env: { DELTAGLIDER_PROXY_AUTH_ANONYMOUS: 'none' }, toml: '[auth]\nanonymous = "read-write"' }).anonymous, 'none', 'env wins');
  t.throws(() => run({ toml: '[[auth.keys]]\naccess_key_id = "a"' }), { message: /secret_access_key/ });
  t.throws(() => run({ toml: '[[auth.keys]]\naccess_key_id = "a/b"\nsecret_access_key = "s"' }), { message: /access_key_id/ });
  t.throws(() => run({ toml: '[[auth.keys]]\naccess_key_id = "a"\nsecret_access_key = "s"\nadmin = true' }), { message: /unknown key admin/ });
  t.throws(() => run({ toml: '[[auth.keys]]\naccess_key_id = "a"\nsecret_access_key = "s"\nread_only = "yes"' }), { message: /read_only/ });
  t.throws(() => run({ toml: '[auth]\nanonymous = "everyone"' }), { message: /none, read-only, read-write/ });
});

t.test('TOML values must have their setting type', async (t) => {
  t.throws(() => run({ toml: 'delta_extensions = "zip"' }), { message: /invalid delta_extensions = "zip": expected a list, e\.g\. \["\.zip", "\.tar"\]/ });
  t.throws(() => run({ toml: 'max_delta_ratio = "0.5"' }), { message: /invalid max_delta_ratio = "0\.5": expected a number without quotes/ });
  t.throws(() => run({ toml: 'codec_max_processes = 1.5' }), { message: /codec_max_processes.*integer/ });
  t.throws(() => run({ toml: 'data_dir = 7' }), { message: /invalid data_dir = 7: expected a string in quotes/ });
  t.throws(() => run({ toml: '[backend]\ns3_force_path_style = "yes"' }), { message: /backend\.s3_force_path_style.*true or false without quotes/ });
  t.throws(() => run({ toml: '[[auth.keys]]\naccess_key_id = "a"\nsecret_access_key = "b"\nbuckets = "x"' }), { message: /auth\.keys\[0\]\.buckets.*expected a list/ });
  t.throws(() => run({ toml: 'tls_cert_file = "c.pem"' }), { message: /tls_cert_file and tls_key_file must be set together/ });
  // The environment has only strings: lists are comma-separated there.
  t.same(run({ env: { DELTAGLIDER_PROXY_DELTA_EXTENSIONS: '.zip,.tar' } }).deltaExtensions, ['.zip', '.tar']);
  t.equal(run({ env: { DELTAGLIDER_PROXY_CODEC_MAX_PROCESSES: '3' } }).codecMaxProcesses, 3);
  t.throws(() => run({ env: { DELTAGLIDER_PROXY_BODY_IDLE_TIMEOUT_SECS: '0' } }), { message: /DELTAGLIDER_PROXY_BODY_IDLE_TIMEOUT_SECS.*from 1 to 3600/ });
});

t.test('unknown DELTAGLIDER_PROXY_* variables are warned about', async (t) => {
  const r = loadConfig({ toml: '', env: { DELTAGLIDER_PROXY_MAX_DELTA_RATION: '0.1', DELTAGLIDER_PROXY_CONFIG: '', DELTAGLIDER_PROXY_LOG_LEVEL: 'info', OTHER: 'x' } });
  if (r.action !== 'run') throw new Error('run');
  t.equal(r.warnings.length, 1);
  t.match(r.warnings[0], 'unknown environment variable DELTAGLIDER_PROXY_MAX_DELTA_RATION is ignored (did you mean DELTAGLIDER_PROXY_MAX_DELTA_RATIO?)');
});
