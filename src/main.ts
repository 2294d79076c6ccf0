#!/usr/bin/env node
import { ConfigError, HELP, loadConfig } from './config/config.js';
import { build } from './app.js';
import { Codec } from './engine/codec.js';
import { VERSION } from './version.js';
import { runScrub } from './cli/scrub.js';
import { runMigrate } from './cli/migrate.js';

const XDELTA_HELP = `xdelta3 is required. Install it with:
  Debian/Ubuntu: sudo apt-get install -y xdelta3
  Fedora/RHEL:   sudo dnf install -y xdelta
  macOS:         brew install xdelta
or point xdelta3_path (DELTAGLIDER_PROXY_XDELTA3_PATH) at the binary.`;

/** Subcommands that read the backend without serving: `scrub` (stats joins it). */
async function subcommand(name: string, args: string[]): Promise<number> {
  const json = args.includes('--json');
  const targets = args.filter((a) => a.startsWith('s3://'));
  const target = targets[0];
  const rest = args.filter((a) => a !== '--json' && !targets.includes(a));
  const action = loadConfig({ argv: rest, env: process.env });
  if (action.action !== 'run') {
    const what = name === 'migrate' ? 's3://cli-bucket[/prefix] [s3://proxy-bucket]' : '[s3://bucket[/prefix]]';
    process.stdout.write(`Usage: deltaglider-proxy ${name} ${what} [--json] [options]\n`);
    return 0;
  }
  if (name === 'migrate') return runMigrate(action.config, targets, json);
  return runScrub(action.config, target, json);
}

async function main(): Promise<number> {
  let action;
  const argv = process.argv.slice(2);
  try {
    if (argv[0] === 'scrub' || argv[0] === 'migrate') return await subcommand(argv[0], argv.slice(1));
    action = loadConfig({ argv, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`deltaglider-proxy: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (action.action === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (action.action === 'version') {
    process.stdout.write(`deltaglider-proxy ${VERSION}\n`);
    return 0;
  }
  const { config } = action;
  try {
    await Codec.probe(config.xdelta3Path);
  } catch (err) {
    process.stderr.write(`deltaglider-proxy: ${(err as Error).message}\n${XDELTA_HELP}\n`);
    return 1;
  }
  const app = await build(config);
  const m = /^(.*):(\d+)$/.exec(config.listenAddr)!;
  const host = m[1].replace(/^\[|\]$/g, '');
  await app.listen({ host, port: Number(m[2]) });
  app.log.info({ listen: config.listenAddr, dataDir: config.dataDir, configFile: action.configFile }, 'deltaglider-proxy ready');
  const stop = async (sig: string) => {
    app.log.info(`${sig}: shutting down`);
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  return -1;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    process.stderr.write(`deltaglider-proxy: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
