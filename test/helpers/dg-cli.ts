import { execa } from 'execa';
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The original DeltaGlider CLI (Python) as a test peer, run as an external
// program from its source tarball (../shared/peers/README.md). Several
// commands run in one Python process (its start-up takes seconds), each
// through the CLI's own command-line entry point.

const here = path.dirname(fileURLToPath(import.meta.url));
export const CLI_TARBALL = process.env.DGP_CLI_TARBALL ?? path.resolve(here, '../../../shared/peers/deltaglider-cli-d81240b.tar.gz');

const DRIVER = `
import sys, io, json, contextlib
sys.argv[0] = 'deltaglider'
from deltaglider.app.cli.main import cli
results = []
for args in json.loads(sys.argv[1]):
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            cli.main(args=args, prog_name='deltaglider', standalone_mode=False)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Exception as e:
            code = 1
            print('exception: %r' % (e,))
    results.append({'code': code, 'out': out.getvalue()})
sys.stdout.write('\\n@@RESULT@@' + json.dumps(results))
`;

/** Why the CLI cannot run here (tests skip with it), or false. Under CI=true it must run. */
export async function dgCliAvailable(): Promise<string | false> {
  let why: string | false = false;
  if (!existsSync(CLI_TARBALL)) why = `DeltaGlider CLI tarball not found at ${CLI_TARBALL} (set DGP_CLI_TARBALL)`;
  else {
    const r = await execa('python3', ['-c', 'import boto3, click, cryptography, requests, dateutil'], { reject: false });
    if (r.exitCode !== 0) why = `the DeltaGlider CLI needs python3 with boto3, click, cryptography, requests, python-dateutil: ${r.stderr.split('\n').pop()}`;
  }
  if (why && process.env.CI === 'true') throw new Error(`${why} (required under CI=true)`);
  return why;
}

export interface DgCli {
  /** Runs CLI commands (argument lists after `deltaglider`) in one process. */
  run(...cmds: string[][]): Promise<{ code: number; out: string }[]>;
}

export async function extractCli(dir: string, endpoint: string, creds: { accessKeyId: string; secretAccessKey: string }): Promise<DgCli> {
  await execa('tar', ['-xzf', CLI_TARBALL, '-C', dir]);
  await fsp.writeFile(path.join(dir, 'driver.py'), DRIVER);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    TMPDIR: dir,
    PYTHONPATH: path.join(dir, 'src'),
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_EC2_METADATA_DISABLED: 'true',
    DG_DISABLE_EC2_DETECTION: 'true',
    DG_LOG_LEVEL: 'WARNING',
    DG_METRICS: 'noop',
  };
  return {
    async run(...cmds) {
      const r = await execa('python3', [path.join(dir, 'driver.py'), JSON.stringify(cmds)], { env, extendEnv: false, reject: false, all: true, timeout: 240_000, cwd: dir });
      const at = r.stdout.lastIndexOf('@@RESULT@@');
      if (at < 0) throw new Error(`DeltaGlider CLI failed:\n${r.all}`);
      return JSON.parse(r.stdout.slice(at + '@@RESULT@@'.length)) as { code: number; out: string }[];
    },
  };
}
