import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import t, { type Test } from 'tap';
import { sdk } from './helpers/clients.js';
import { startProxy, tempDir } from './helpers/proxy.js';

// The web console in a real browser: Debian's chromium, driven by
// puppeteer-core (which downloads nothing). Sign in, open a bucket, and
// check that the figures shown are the ones `stats --json` prints.
// Screenshots land in test-artifacts/ (gitignored).

const CHROMIUM = process.env.DGP_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve('test-artifacts');
const loader = process.execArgv.filter((a) => a.includes('typescript'));
const main = path.resolve('src/main.ts');

function missing(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is required under CI=true (.ci/run installs chromium)`);
  return `${CHROMIUM} is not installed (apt-get install chromium)`;
}

async function launch(t: Test): Promise<Browser> {
  const userDataDir = await tempDir(t, 'dgp-chromium-');
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: 30_000,
  });
  t.teardown(() => browser.close());
  return browser;
}

const values = (page: Page, sel: string) =>
  page.$$eval(`${sel} [data-field]`, (els) => Object.fromEntries(els.map((e) => [e.getAttribute('data-field'), Number(e.getAttribute('data-value'))])));

t.test('sign in, open a bucket, figures match stats --json', { skip: missing(), timeout: 120_000 }, async (t) => {
  const p = await startProxy(t, { authKeys: [{ accessKeyId: 'console-user', secretAccessKey: 'console-secret-1', readOnly: true }, { accessKeyId: 'writer', secretAccessKey: 'writer-secret-1', readOnly: false }] });
  const s3 = sdk(p.url, { credentials: { accessKeyId: 'writer', secretAccessKey: 'writer-secret-1' } });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'releases' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'photos' }));
  const base = randomBytes(400_000);
  for (let v = 0; v < 4; v++) {
    const b = Buffer.from(base);
    randomBytes(200).copy(b, 10_000 + v * 50_000);
    await s3.send(new PutObjectCommand({ Bucket: 'releases', Key: `app/app-1.${v}.0.zip`, Body: b }));
  }
  await s3.send(new PutObjectCommand({ Bucket: 'releases', Key: 'app/CHANGELOG.txt', Body: 'v1.3.0: faster' }));
  await s3.send(new PutObjectCommand({ Bucket: 'releases', Key: 'tools/tool-1.tar.gz', Body: randomBytes(30_000) }));
  await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'cat.jpg', Body: randomBytes(120_000) }));

  const cli = await execa(process.execPath, [...loader, main, 'stats', 's3://releases', '--json', '--data-dir', p.dataDir], { reject: false, all: true, timeout: 60_000 });
  t.equal(cli.exitCode, 0, cli.exitCode === 0 ? 'stats --json runs' : cli.all);
  const stats = JSON.parse(cli.stdout) as { objects: number; logical_bytes: number; stored_bytes: number; saving: number; deltaspaces: Record<string, number | string>[] };

  const browser = await launch(t);
  const page = await browser.newPage();
  page.setDefaultTimeout(20_000);
  await page.setViewport({ width: 1100, height: 760 });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${p.url}/_/`);
  await page.waitForSelector('#signin:not([hidden])');

  // A wrong secret is refused on the page.
  await page.type('input[name=accessKeyId]', 'console-user');
  await page.type('input[name=secretAccessKey]', 'wrong');
  await page.click('#signin button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#signin-error')?.textContent !== '');
  t.match(await page.$eval('#signin-error', (e) => e.textContent), 'wrong secret');

  await page.$eval('input[name=secretAccessKey]', (e) => ((e as HTMLInputElement).value = ''));
  await page.type('input[name=secretAccessKey]', 'console-secret-1');
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#buckets tr[data-bucket="releases"]');
  const cookies = await browser.cookies();
  const session = cookies.find((c) => c.name === 'dgp_console');
  t.ok(session?.httpOnly, 'the session cookie is HttpOnly');
  t.equal(session?.sameSite, 'Strict');
  t.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read it');
  const listed = await values(page, '#buckets tr[data-bucket="releases"]');
  t.same(listed, { objects: stats.objects, logical_bytes: stats.logical_bytes, stored_bytes: stats.stored_bytes, saving: stats.saving }, 'bucket list = stats --json');
  t.ok(await page.$('.chart svg rect'), 'the chart is drawn');
  await fsp.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-buckets.png') });

  await page.click('#buckets tr[data-bucket="releases"] a');
  await page.waitForSelector('#bucket-summary');
  const summary = await values(page, '#bucket-summary');
  t.same(summary, { objects: stats.objects, logical_bytes: stats.logical_bytes, stored_bytes: stats.stored_bytes, saving: stats.saving }, 'bucket page = stats --json');
  for (const d of stats.deltaspaces) {
    const shown = await values(page, `#deltaspaces tr[data-deltaspace="${d.deltaspace}"]`);
    const { bucket: _b, deltaspace: _d, ...figures } = d;
    void _b;
    void _d;
    t.same(shown, figures, `deltaspace ${d.deltaspace}/ = stats --json`);
  }
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-bucket.png'), fullPage: true });

  await page.click('#deltaspaces tr[data-deltaspace="app"] a');
  await page.waitForSelector('#objects tr[data-key="app/app-1.1.0.zip"]');
  const row = await page.$eval('#objects tr[data-key="app/app-1.1.0.zip"]', (tr) => ({
    storedAs: tr.querySelector('[data-field=stored_as]')?.textContent,
    stored: Number(tr.querySelector('[data-field=stored_size]')?.getAttribute('data-value')),
  }));
  t.equal(row.storedAs, 'delta');
  t.ok(row.stored < 5_000, `a later version is stored as a small delta (${row.stored} bytes)`);
  t.match(await page.$eval('#objects tr[data-key="app/app-1.0.0.zip"] [data-field=stored_as]', (e) => e.textContent), 'seeded the reference');
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-objects.png'), fullPage: true });

  await page.goto(`${p.url}/_/#/live`);
  await page.waitForFunction(() => document.querySelector('#rss')?.textContent !== '…');
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-live.png') });

  await page.click('#signout');
  await page.waitForSelector('#signin:not([hidden])');
  t.same(errors, [], 'no script errors');
});
