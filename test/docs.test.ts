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

t.test('package.json and VERSION agree', async (t) => {
  t.equal(JSON.parse(readFileSync('package.json', 'utf8')).version, VERSION);
});
