// Drives Chromium through playwright-core for crates/signalbox/tests/browser_ofrep.rs.
//
// Serves page.js (bundled with esbuild) from its own origin (127.0.0.1, another port than
// signalbox), opens it in a fresh headless Chromium, and has the OpenFeature web SDK's OFREP
// provider evaluate flags against SIGNALBOX_URL. Reports JSON lines on stdout:
//
//   {"step":"init", ok, error?, values?}       after the provider's first bulk evaluation
//   {"step":"polled", requests}                 once the provider has revalidated (304) twice
//   {"step":"changed", values, events, ...}     after the driver wrote a line on stdin (the test
//                                               changed a flag) and the page saw the new value
//
// With EXPECT=refused it stops after "init". Environment: SIGNALBOX_URL, SIGNALBOX_API_KEY,
// SIGNALBOX_ENVIRONMENT, CHROMIUM, EXPECT, CHANGED_GREETING (the value to wait for), PAGE_PORT
// (the page's port; the server's allowed origin names it).
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const signalbox = env('SIGNALBOX_URL');
const expect = process.env.EXPECT ?? 'works';
const report = (line) => process.stdout.write(JSON.stringify(line) + '\n');

async function until(what, check, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const bundle = await esbuild.build({
  entryPoints: [path.join(here, 'page.js')],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  write: false,
  logLevel: 'silent',
  // Resolved from wherever `npm ci` put node_modules (the test installs them outside the tree).
  nodePaths: [path.join(process.cwd(), 'node_modules')],
});
const script = bundle.outputFiles[0].text;
const pageServer = http.createServer((req, res) => {
  if (req.url === '/page.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(script);
  } else if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>flags</title><script src="/page.js"></script>');
  } else {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((r) => pageServer.listen(Number(process.env.PAGE_PORT ?? 0), '127.0.0.1', r));
const pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'signalbox-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: env('CHROMIUM'),
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
let exitCode = 0;
try {
  const page = await context.newPage();
  const requests = [];
  page.on('requestfinished', async (request) => {
    if (!request.url().startsWith(signalbox)) return;
    const response = await request.response();
    requests.push({
      method: request.method(),
      path: new URL(request.url()).pathname,
      status: response?.status() ?? null,
      ifNoneMatch: (await request.allHeaders())['if-none-match'] ?? null,
      origin: (await request.allHeaders())['origin'] ?? null,
    });
  });
  page.on('requestfailed', (request) => {
    if (!request.url().startsWith(signalbox)) return;
    requests.push({ method: request.method(), path: new URL(request.url()).pathname, failed: request.failure()?.errorText ?? 'failed' });
  });
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await page.goto(`${pageOrigin}/`);
  const init = await page.evaluate(
    (cfg) => window.startFlags(cfg),
    { baseUrl: signalbox, apiKey: env('SIGNALBOX_API_KEY'), environment: env('SIGNALBOX_ENVIRONMENT'), pollInterval: 300 },
  );
  const values = init.ok ? await page.evaluate(() => window.readFlags()) : null;
  if (init.ok) {
    // 'requestfinished' handlers record asynchronously (they await the response's headers), so
    // the bulk evaluation the provider already answered may not be in the list yet.
    await until('the bulk evaluation recorded', () =>
      requests.some((r) => r.method === 'POST' && r.path === '/ofrep/v1/evaluate/flags'));
  }
  report({ step: 'init', pageOrigin, ...init, values, requests: requests.slice(), consoleErrors });
  if (expect === 'works' && init.ok) {
    // The provider polls the bulk evaluation with the ETag it got; nothing changed, so 304s.
    await until('two 304 revalidations', () =>
      requests.filter((r) => r.status === 304 && r.ifNoneMatch).length >= 2);
    report({ step: 'polled', requests: requests.slice() });
    // The test changes a flag through the admin API, then writes a line.
    const lines = readline.createInterface({ input: process.stdin });
    await new Promise((r) => lines.once('line', r));
    lines.close();
    const changedAt = Date.now();
    const want = env('CHANGED_GREETING');
    await until('the page to see the changed flag', () =>
      page.evaluate((w) => window.readFlags().greeting.value === w, want));
    const seenAfterMs = Date.now() - changedAt;
    // The event comes from the same poll that updated the value; give it that poll to arrive.
    await until('the configuration-changed event', () =>
      page.evaluate(() => window.flagEvents().some((e) => e.type === 'configuration_changed')), 5000)
      .catch(() => false);
    report({
      step: 'changed',
      seenAfterMs,
      values: await page.evaluate(() => window.readFlags()),
      events: await page.evaluate(() => window.flagEvents()),
      requests: requests.slice(),
    });
  }
} catch (e) {
  report({ step: 'error', error: String(e?.stack ?? e) });
  exitCode = 1;
} finally {
  await context.close();
  pageServer.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(exitCode);
