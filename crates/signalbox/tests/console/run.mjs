// Drives the web console in Chromium through playwright-core for
// crates/signalbox/tests/console_browser.rs, and checks every page with axe-core.
//
// The pages are found the way a person finds them: the navigation's links, and from the pages
// they lead to, the first link of each kind of detail page (a flag, an experiment, a user...),
// so a new page is visited without changing this script. Reports JSON lines on stdout, one per
// step; the Rust test asserts on them:
//
//   {"step":"signed-in", ...}       the sign-in form took the admin key
//   {"step":"page", ...}            one per page visited as admin: status, axe violations by
//                                   impact, script/style bytes, CSP errors, forms it offers
//   {"step":"keyboard", ...}        Tab order and focus outline on the overview
//   {"step":"kill-switch", ...}     the evaluation tester before, during and after the kill switch
//   {"step":"keys", ...}            a key created, its secret seen once, then revoked
//   {"step":"forecast", ...}        the fan chart's SVG
//   {"step":"signed-out", ...}      where a console page lands after signing out
//   {"step":"read-only", ...}       per page, the write controls a read-only key is shown; the
//                                   admin's pages its navigation leaves out, opened anyway; and
//                                   what posting anyway answers
//   {"step":"error", error}         anything that threw (then the exit code is 1)
//
// axe-core is injected with page.evaluate: the console's Content-Security-Policy allows scripts
// from its own origin only, so page.addScriptTag (an inline script) is refused, while code the
// driver evaluates through the DevTools protocol is not subject to the page's CSP. The CSP stays
// on, so a page that breaks it (an inline style or script) shows up as a CSP error.
//
// Environment: SIGNALBOX_URL, SIGNALBOX_ADMIN_KEY, SIGNALBOX_READ_KEY, CHROMIUM,
// SCREENSHOT_DIR (where the PNGs go).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('SIGNALBOX_URL');
const adminKey = env('SIGNALBOX_ADMIN_KEY');
const readKey = env('SIGNALBOX_READ_KEY');
const screenshotDir = env('SCREENSHOT_DIR');
const axeSource = fs.readFileSync(path.join(process.cwd(), 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const report = (line) => process.stdout.write(JSON.stringify(line) + '\n');

// The kinds of detail page, by the path of a link to one; the first link of each kind found on
// a visited page is visited too.
const DETAIL_PAGES = [
  ['flag', /^\/console\/flags\/[^/?#]+\/[^/?#]+$/],
  ['flag-edit', /^\/console\/flags\/[^/?#]+\/[^/?#]+\/edit$/],
  ['experiment', /^\/console\/experiments\/[^/?#]+$/],
  ['weber-segment', /^\/console\/weber\/segments\/[^/?#]+$/],
  ['weber-user', /^\/console\/weber\/users\/[^/?#]+$/],
  ['llm-conversation', /^\/console\/llm\/conversations\/[^/?#]+$/],
  ['feedback-item', /^\/console\/feedback\/[^/?#]+$/],
];

// A navigation page's name: its path after /console (the overview for /console itself).
const navName = (href) => {
  const p = new URL(href, base).pathname.replace(/^\/console\/?/, '');
  return p === '' ? 'overview' : p.replace(/\//g, '-');
};

async function until(what, check, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'signalbox-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: env('CHROMIUM'),
  headless: true,
  viewport: { width: 1280, height: 800 },
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

// What the current page loaded and complained about; reset by each visit.
let current = null;
const page = context.pages()[0] ?? (await context.newPage());
// Revoking asks first (data-confirm): the person says yes.
page.on('dialog', (dialog) => dialog.accept());
page.on('console', (m) => {
  // A failed load is recorded with its URL from the response instead (below).
  if (current && m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
    current.consoleErrors.push(m.text());
  }
});
page.on('response', (response) => {
  const url = new URL(response.url());
  // The page's own status is checked by visit(); browsers ask for /favicon.ico on their own.
  if (!current || response.status() < 400 || response.request().resourceType() === 'document' || url.pathname === '/favicon.ico') return;
  current.consoleErrors.push(`${response.status()} for ${url.pathname}`);
});
page.on('pageerror', (e) => {
  if (current) current.consoleErrors.push(`page error: ${e.message}`);
});
page.on('requestfinished', async (request) => {
  const record = current;
  const type = request.resourceType();
  if (!record || (type !== 'script' && type !== 'stylesheet')) return;
  const response = await request.response();
  // The body as the page gets it (decoded), whether it came over the network or from the cache.
  const body = await response?.body().catch(() => null);
  const headers = (await response?.allHeaders().catch(() => null)) ?? {};
  record.assets.push({
    type,
    path: new URL(request.url()).pathname,
    bytes: body?.length ?? 0,
    encoding: headers['content-encoding'] ?? 'identity',
    status: response?.status() ?? null,
  });
});

// Runs axe-core on the page; the violations, with the elements they concern.
async function axe() {
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return {
      violations: result.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
      })),
      passes: result.passes.length,
      incomplete: result.incomplete.length,
    };
  });
}

// The console links on the page (main content), as paths with their query.
async function links() {
  return page.$$eval('a[href]', (as) =>
    as.map((a) => {
      const url = new URL(a.href);
      return url.origin === location.origin ? url.pathname + url.search : null;
    }).filter((p) => p && p.startsWith('/console')));
}

// The forms that write, with their action and fields, so the read-only pass can post them.
async function writeControls() {
  return page.evaluate(() => {
    const tester = (el) => el.closest('form#evaluation-tester') !== null;
    const forms = [...document.querySelectorAll('form')]
      .filter((f) => (f.getAttribute('method') ?? 'get').toLowerCase() === 'post')
      .filter((f) => f.getAttribute('action') !== '/console/sign-out' && !tester(f))
      .map((f) => ({
        id: f.id || null,
        class: f.className || null,
        action: new URL(f.getAttribute('action') ?? location.href, location.href).pathname,
      }));
    const htmx = [...document.querySelectorAll('[hx-post],[hx-put],[hx-patch],[hx-delete]')]
      .filter((el) => !tester(el))
      .map((el) => el.outerHTML.slice(0, 160));
    return { forms, htmx };
  });
}

// Visits a page: its status, axe's findings, a screenshot, what it loaded.
async function visit(pagePath, name, { expectStatus = 200, screenshot = true } = {}) {
  current = { name, path: pagePath, assets: [], consoleErrors: [] };
  const response = await page.goto(base + pagePath);
  await page.waitForLoadState('load');
  const status = response?.status() ?? null;
  if (status !== expectStatus) {
    throw new Error(`${pagePath} answered ${status}, not ${expectStatus}: ${(await page.textContent('body'))?.slice(0, 400)}`);
  }
  // 'requestfinished' handlers record asynchronously (they await the body): wait for every
  // script and stylesheet the page names before adding them up.
  const named = await page.evaluate(() => document.querySelectorAll('script[src], link[rel=stylesheet]').length);
  await until('the page\'s scripts and styles recorded', () => current.assets.length >= named, 5000);
  // As sent (compressed): the page's resource timing knows, also for what came from the cache.
  const encoded = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType('resource')
    .map((e) => [new URL(e.name).pathname, e.encodedBodySize])));
  for (const asset of current.assets) asset.sentBytes = encoded[asset.path] ?? null;
  const axeResult = await axe();
  let charts = 0;
  if (screenshot) {
    await page.screenshot({ path: path.join(screenshotDir, `${name}.png`) });
    // A page's first chart on its own too: the viewport often ends above it.
    charts = await page.locator('figure.chart').count();
    if (charts > 0) {
      await page.locator('figure.chart').first().screenshot({ path: path.join(screenshotDir, `${name}-chart.png`) });
    }
  }
  const impacts = {};
  for (const v of axeResult.violations) impacts[v.impact] = (impacts[v.impact] ?? 0) + 1;
  const sum = (type, key) => current.assets.filter((a) => a.type === type).reduce((n, a) => n + a[key], 0);
  const record = {
    step: 'page',
    name,
    path: pagePath,
    finalPath: new URL(page.url()).pathname,
    status,
    title: await page.title(),
    h1: await page.$$eval('h1', (hs) => hs.length),
    charts,
    axe: { impacts, passes: axeResult.passes, incomplete: axeResult.incomplete, violations: axeResult.violations },
    scriptBytes: sum('script', 'bytes'),
    styleBytes: sum('stylesheet', 'bytes'),
    scriptSentBytes: sum('script', 'sentBytes'),
    styleSentBytes: sum('stylesheet', 'sentBytes'),
    assets: current.assets,
    consoleErrors: current.consoleErrors,
    controls: await writeControls(),
  };
  return record;
}

// Visits the navigation and the detail pages reachable from it; the page records, in order.
async function crawl(prefix, options = {}) {
  await page.goto(base + '/console');
  const nav = await page.$$eval('nav.sections a', (as) => as.map((a) => a.getAttribute('href')));
  const queue = nav.map((href) => ({ path: href, name: prefix + navName(href) }));
  const seenKinds = new Set();
  const records = [];
  while (queue.length > 0) {
    const next = queue.shift();
    const record = await visit(next.path, next.name, options);
    records.push(record);
    for (const link of await links()) {
      const linkPath = link.split('?')[0];
      for (const [kind, pattern] of DETAIL_PAGES) {
        if (!seenKinds.has(kind) && pattern.test(linkPath)) {
          seenKinds.add(kind);
          queue.push({ path: link, name: prefix + kind, kind });
        }
      }
    }
    record.kind = next.kind ?? 'navigation';
  }
  return records;
}

async function signIn(key) {
  await page.goto(base + '/console');
  if (new URL(page.url()).pathname !== '/console/sign-in') {
    throw new Error(`signed out, /console went to ${page.url()}, not to the sign-in page`);
  }
  // Typed into the field its label names, as a person would.
  await page.getByLabel('API key').pressSequentially(key);
  await Promise.all([page.waitForURL((u) => u.pathname === '/console'), page.getByRole('button', { name: 'Sign in' }).click()]);
}

// The tester's answer for a context, on the flag page that is open.
async function evaluate(context) {
  await page.evaluate(() => {
    for (const el of document.querySelectorAll('[data-reason]')) el.setAttribute('data-e2e-stale', '');
  });
  await page.fill('form#evaluation-tester textarea[name=context]', context);
  await page.locator('form#evaluation-tester [type=submit], form#evaluation-tester button').first().click();
  const handle = await page.waitForFunction(() => {
    const el = [...document.querySelectorAll('#evaluation-result[data-reason], #evaluation-result [data-reason]')]
      .find((e) => !e.hasAttribute('data-e2e-stale'));
    return el ? { value: el.dataset.value, variant: el.dataset.variant ?? null, reason: el.dataset.reason, text: el.textContent.trim().replace(/\s+/g, ' ') } : null;
  }, null, { timeout: 15000 });
  return handle.jsonValue();
}

async function killSwitchLabel() {
  return page.$eval('form#kill-switch', (f) => f.textContent.trim().replace(/\s+/g, ' '));
}

async function flipKillSwitch(want) {
  await page.locator('form#kill-switch button, form#kill-switch [type=submit]').first().click();
  await until(`the kill switch to offer "${want}"`, async () =>
    (await killSwitchLabel().catch(() => '')).toLowerCase().includes(want.toLowerCase()));
}

// Posts a form's fields with the page's own CSRF token, as a script on the page could.
async function postAnyway(action, fields) {
  return page.evaluate(async ({ action, fields }) => {
    const csrf = document.querySelector('form.sign-out input[name=csrf], input[name=csrf]').value;
    const body = new URLSearchParams([['csrf', csrf], ...fields]);
    const response = await fetch(action, { method: 'POST', body, redirect: 'manual' });
    return response.status;
  }, { action, fields });
}

async function apiStatus(key) {
  const response = await fetch(`${base}/api/v1/tenant`, { headers: { authorization: `Bearer ${key}` } });
  return response.status;
}

let exitCode = 0;
try {
  fs.mkdirSync(screenshotDir, { recursive: true });

  // 1. Sign in (the sign-in page is checked too, signed out).
  report(await visit('/console/sign-in', 'sign-in'));
  await signIn(adminKey);
  report({ step: 'signed-in', path: new URL(page.url()).pathname, cookies: (await context.cookies()).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, secure: c.secure })) });

  // 2. Every page, as admin.
  const pages = await crawl('');
  for (const record of pages) report(record);
  report(await visit('/console/no-such-page', 'not-found', { expectStatus: 404, screenshot: false }));

  // Keyboard: from the top of the overview, Tab reaches the skip link, then the navigation.
  await page.goto(base + '/console');
  const stops = [];
  for (let i = 0; i < 8; i += 1) {
    await page.keyboard.press('Tab');
    const stop = await page.evaluate(() => {
      const el = document.activeElement;
      const style = getComputedStyle(el);
      const rect = el.getBoundingClientRect();
      return {
        tag: el.tagName.toLowerCase(),
        text: el.textContent.trim().slice(0, 40),
        skipLink: el.classList.contains('skip-link'),
        inNav: el.closest('nav.sections') !== null,
        outline: `${style.outlineStyle} ${style.outlineWidth} ${style.outlineColor}`,
        outlineVisible: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
        onScreen: rect.right > 0 && rect.bottom > 0 && rect.left < innerWidth && rect.top < innerHeight,
      };
    });
    stops.push(stop);
    if (stop.inNav) break;
  }
  report({ step: 'keyboard', stops });

  // 3. The kill switch changes what the evaluation tester answers. The flag: the first on the
  // flags page that is on (a flag already off answers DISABLED whether killed or not).
  const testerContext = '{"targetingKey":"user-1"}';
  const flagsPage = pages.find((p) => p.finalPath === '/console/flags');
  let killForm = null;
  let flagPath = null;
  let before = null;
  if (flagsPage) {
    await page.goto(base + flagsPage.path);
    const flagLinks = [...new Set((await links()).filter((l) => DETAIL_PAGES[0][1].test(l.split('?')[0])))];
    for (const link of flagLinks.slice(0, 10)) {
      await page.goto(base + link);
      const answer = await evaluate(testerContext);
      if (answer.reason !== 'DISABLED') {
        flagPath = link;
        before = answer;
        break;
      }
    }
  }
  if (!flagPath) {
    report({ step: 'kill-switch', skipped: 'no flag that is on was reachable from the navigation' });
  } else {
    killForm = await page.$eval('form#kill-switch', (f) => ({
      action: new URL(f.getAttribute('action') ?? location.href, location.href).pathname,
      fields: [...new FormData(f).entries()].filter(([k]) => k !== 'csrf'),
    }));
    const offerBefore = await killSwitchLabel();
    await flipKillSwitch('Turn back on');
    const killed = await evaluate(testerContext);
    await flipKillSwitch('Turn off');
    const restored = await evaluate(testerContext);
    report({ step: 'kill-switch', flag: flagPath, offerBefore, before, killed, restored, killForm });
  }

  // 4. A key: created, its secret shown once, never on the list, then revoked.
  const keysPage = pages.find((p) => p.finalPath === '/console/keys');
  let createForm = null;
  if (!keysPage) {
    report({ step: 'keys', skipped: 'the navigation has no API keys page' });
  } else {
    await page.goto(base + '/console/keys');
    createForm = await page.$eval('form#create-key', (f) => new URL(f.getAttribute('action') ?? location.href, location.href).pathname);
    const label = `browser-${Date.now()}`;
    await page.fill('form#create-key input[name=label]', label);
    await page.check('form#create-key input[name=scopes][value=read]');
    await page.locator('form#create-key button, form#create-key [type=submit]').first().click();
    await page.waitForSelector('#new-key-secret');
    const secret = (await page.textContent('#new-key-secret')).trim();
    const createdPage = await page.content();
    const worksBeforeRevoke = await apiStatus(secret);
    await page.goto(base + '/console/keys');
    const listShowsSecret = (await page.content()).includes(secret);
    const listShowsLabel = (await page.content()).includes(label);
    const row = page.locator('tr', { hasText: label });
    const keyId = await row.locator('form.revoke-key').getAttribute('data-key-id');
    await row.locator('form.revoke-key button, form.revoke-key [type=submit]').first().click();
    // Revoked once the API refuses it (the revocation forgets the server's auth cache).
    const worksAfterRevoke = await until('the key to be refused', async () => {
      const status = await apiStatus(secret);
      return status === 200 ? null : status;
    });
    await page.waitForLoadState('load');
    const rowAfterRevoke = await page.locator('tr', { hasText: label }).first()
      .textContent({ timeout: 2000 }).then((t) => t.trim().replace(/\s+/g, ' ')).catch(() => null);
    report({
      step: 'keys',
      createForm,
      secretLength: secret.length,
      secretShownOnCreation: createdPage.includes(secret),
      listShowsSecret,
      listShowsLabel,
      keyId,
      worksBeforeRevoke,
      worksAfterRevoke,
      rowAfterRevoke,
    });
  }

  // 5. The forecast fan chart is drawn.
  if (!pages.some((p) => p.finalPath === '/console/forecasts')) {
    report({ step: 'forecast', skipped: 'the navigation has no forecasts page' });
  } else {
    await page.goto(base + '/console/forecasts');
    const svg = page.locator('figure#fan-chart svg').first();
    report({
      step: 'forecast',
      svgs: await page.locator('figure#fan-chart svg').count(),
      // What the chart is drawn with: the band (polygon), median and members (polyline or
      // path), observed values (circle).
      shapes: await page.$$eval('figure#fan-chart svg :is(path, polyline, polygon, line, circle)', (els) => {
        const counts = {};
        for (const el of els) counts[el.tagName] = (counts[el.tagName] ?? 0) + 1;
        return counts;
      }),
      role: await svg.getAttribute('role', { timeout: 2000 }).catch(() => null),
      label: await svg.getAttribute('aria-label', { timeout: 2000 }).catch(() => null),
      caption: await page.locator('figure#fan-chart figcaption').first().textContent({ timeout: 2000 }).catch(() => null),
    });
  }

  // 6. Signing out ends the session: a console page lands on sign-in.
  await Promise.all([page.waitForURL((u) => u.pathname === '/console/sign-in'), page.getByRole('button', { name: 'Sign out' }).click()]);
  const afterSignOut = await page.goto(base + (keysPage ? '/console/keys' : '/console'));
  report({
    step: 'signed-out',
    landedOn: new URL(page.url()).pathname,
    next: new URL(page.url()).searchParams.get('next'),
    status: afterSignOut?.status() ?? null,
    cookies: (await context.cookies()).map((c) => c.name),
  });

  // 7. A read-only key: no write controls anywhere, and posting anyway is refused.
  await signIn(readKey);
  const readPages = [];
  for (const record of await crawl('read-only-', { screenshot: false })) {
    readPages.push({ name: record.name, path: record.path, status: record.status, controls: record.controls });
  }
  // The pages the admin saw that a read-only key's navigation leaves out: refused, and with no
  // write control on the refusal either.
  const readPaths = new Set(readPages.map((p) => p.path));
  const hidden = [];
  for (const p of pages.filter((p) => p.kind === 'navigation' && !readPaths.has(p.path))) {
    const response = await page.goto(base + p.path);
    hidden.push({ path: p.path, status: response?.status() ?? null, controls: await writeControls() });
  }
  // Posted from a page the key may open, with that page's CSRF token.
  await page.goto(base + '/console');
  const refused = {};
  if (killForm) refused.killSwitch = await postAnyway(killForm.action, killForm.fields);
  if (createForm) refused.createKey = await postAnyway(createForm, [['label', 'read-only-attempt'], ['scopes', 'read']]);
  report({ step: 'read-only', pages: readPages, hidden, refused });
} catch (e) {
  report({ step: 'error', error: String(e?.stack ?? e), at: page.url() });
  exitCode = 1;
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(exitCode);
