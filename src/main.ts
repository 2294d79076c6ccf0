#!/usr/bin/env node
import { ConfigError, HELP, loadConfig } from './config/config.js';
import { Codec } from './engine/codec.js';
import { startServer, StartupError } from './server.js';
import { VERSION } from './version.js';
import { runScrub } from './cli/scrub.js';
import { runStats } from './cli/stats.js';
import { runMigrate } from './cli/migrate.js';

// The command: settings, start-up checks, serving, and a graceful stop.
// Failures a user can fix print one line naming the setting and what to do.

const XDELTA_HELP =
  'install it (Debian/Ubuntu: sudo apt-get install -y xdelta3; Fedora/RHEL: sudo dnf install -y xdelta; macOS: brew install xdelta) or point xdelta3_path (DELTAGLIDER_PROXY_XDELTA3_PATH) at the binary';

const say = (line: string) => process.stderr.write(`deltaglider-proxy: ${line}\n`);

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
    if (argv[0] === 'stats') return await runStats(argv.slice(1));
    action = loadConfig({ argv, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      say(err.message);
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
  for (const w of action.warnings) say(`warning: ${w}`);
  try {
    await Codec.probe(config.xdelta3Path);
  } catch (err) {
    say(`xdelta3_path ${config.xdelta3Path}: ${(err as Error).message.split('\n')[0]}; ${XDELTA_HELP}`);
    return 1;
  }
  let running;
  try {
    running = await startServer(config, { notice: (m) => say(m) });
  } catch (err) {
    if (err instanceof StartupError) {
      say(err.message);
      return 1;
    }
    throw err;
  }
  const { app } = running;
  app.log.info({ listen: config.listenAddr, url: running.url, dataDir: config.dataDir, configFile: action.configFile }, 'deltaglider-proxy ready');
  let signals = 0;
  const stop = (sig: string) => {
    if (++signals > 1) {
      app.log.warn(`${sig} again: exiting without waiting for requests in flight`);
      process.exit(1);
    }
    app.log.info(`${sig}: shutting down (requests in flight have ${config.shutdownTimeoutSecs} s to finish)`);
    running.stop().then(
      () => {
        app.log.info('stopped');
        process.exit(0);
      },
      (err: Error) => {
        app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  return -1;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: Error) => {
    // Unexpected: still one line; the stack only when asked for.
    say(`${err.message ?? err}${process.env.DELTAGLIDER_PROXY_LOG_LEVEL === 'debug' || process.env.DELTAGLIDER_PROXY_LOG_LEVEL === 'trace' ? `\n${err.stack}` : ' (set DELTAGLIDER_PROXY_LOG_LEVEL=debug for details)'}`);
    process.exit(1);
  },
);
