import { readFileSync } from 'node:fs';
import t from 'tap';
import { loadConfig, SETTINGS } from '../src/config/config.js';
import { VERSION } from '../src/version.js';

// The docs are part of the product: every setting is documented, and the
// example file parses to the defaults.

const example = readFileSync('deltaglider-proxy.toml.example', 'utf8');
const configDoc = readFileSync('docs/configuration.md', 'utf8');

t.test('every setting is in the example and the configuration doc', async (t) => {
  for (const s of SETTINGS) {
    const leaf = s.toml.split('.').pop()!;
    t.match(example, new RegExp(`^#? ?${leaf} =`, 'm'), `${s.toml} in the example`);
    t.match(example, s.env, `${s.env} in the example`);
    t.match(configDoc, `\`${s.toml}\``, `${s.toml} in docs/configuration.md`);
    t.match(configDoc, s.env, `${s.env} in docs/configuration.md`);
  }
});

t.test('the example parses to the defaults', async (t) => {
  const fromExample = loadConfig({ toml: example });
  const defaults = loadConfig({ toml: '' });
  t.same(fromExample, defaults);
});

t.test('the example configurations in config/ parse', async (t) => {
  const { readdirSync } = await import('node:fs');
  for (const f of readdirSync('config').filter((n) => n.endsWith('.toml'))) {
    const r = loadConfig({ toml: readFileSync(`config/${f}`, 'utf8') });
    t.equal(r.action, 'run', f);
    if (r.action === 'run') t.ok(r.config.authKeys.length > 0, `${f} configures key pairs`);
  }
});

t.test('package.json and VERSION agree', async (t) => {
  t.equal(JSON.parse(readFileSync('package.json', 'utf8')).version, VERSION);
});
