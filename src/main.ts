#!/usr/bin/env node
import { ConfigError, HELP, loadConfig } from './config/config.js';
import { build } from './app.js';
import { Codec } from './engine/codec.js';
import { VERSION } from './version.js';
import { runStats } from './cli/stats.js';

const XDELTA_HELP = `xdelta3 is required. Install it with:
  Debian/Ubuntu: sudo apt-get install -y xdelta3
  Fedora/RHEL:   sudo dnf install -y xdelta
  macOS:         brew install xdelta
or point xdelta3_path (DELTAGLIDER_PROXY_XDELTA3_PATH) at the binary.`;

async function main(): Promise<number> {
  let action;
  try {
    if (process.argv[2] === 'stats') return await runStats(process.argv.slice(3));
    action = loadConfig({ argv: process.argv.slice(2), env: process.env });
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
