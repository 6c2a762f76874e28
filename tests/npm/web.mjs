// Drives Debian's Chromium (headless, through playwright-core; no browser is downloaded) over
// labctl's status pages as a person would: the login form, a wrong token, a right one, the
// pages reached by following their links, logging out. Takes a screenshot of each page at a
// desktop and a phone width. Prints what it saw as one JSON object; tests/it/web.rs judges it.
//
//   node web.mjs BASE_URL TOKEN SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, token, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
});
const out = { pages: {}, screenshots: [], requests: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, javaScriptEnabled: false });
  const page = await context.newPage();
  // Every request the pages make: nothing may leave the server's origin.
  page.on('request', (r) => out.requests.push(r.url()));
  const origin = new URL(base).origin;
  const snap = async (name) => {
    for (const [label, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }]]) {
      await page.setViewportSize(viewport);
      const file = join(shots, `${name}-${label}.png`);
      await page.screenshot({ path: file, fullPage: true });
      out.screenshots.push(file);
      // Whether the page fits the width: no sideways scrolling of the page as a whole.
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      out.pages[name] = { ...(out.pages[name] || {}), [`${label}ScrollWidth`]: width };
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  };
  const record = async (name) => {
    out.pages[name] = {
      ...(out.pages[name] || {}),
      url: page.url().replace(origin, ''),
      title: await page.title(),
      h1: (await page.locator('h1').first().textContent())?.trim(),
      text: (await page.locator('main').innerText()).trim(),
      bytes: (await page.content()).length,
    };
    await snap(name);
  };

  // Not logged in: any page is the login form, which remembers where it was going.
  await page.goto(`${base}/drift?kind=DhcpReservation`);
  await record('login');
  await page.fill('#token', 'not-a-token');
  await page.click('button[type=submit]');
  out.wrongToken = { url: page.url().replace(origin, ''), alert: (await page.locator('[role=alert]').textContent())?.trim() };
  await page.fill('#token', token);
  await page.click('button[type=submit]');
  await record('drift');
  const whisper = page.locator('li.deviation', { hasText: 'whisper' }).first();
  out.whisper = (await whisper.innerText()).trim();

  await page.click('header nav >> text=Overview');
  await record('overview');
  // The dark theme, as a browser set to it asks for it.
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = join(shots, 'overview-dark-desktop.png');
  await page.screenshot({ path: dark, fullPage: true });
  out.screenshots.push(dark);
  out.darkBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.emulateMedia({ colorScheme: 'light' });
  out.lightBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.click('header nav >> text=Drift');
  // The filter form, as a person would use it: any kind, then follow the resource link.
  await page.selectOption('select[name=kind]', '');
  await page.click('form.filters button');
  out.driftAll = (await page.locator('p.count').innerText()).trim();
  await page.click('li.deviation >> a.resource >> text=whisper');
  await record('resource');
  await page.click('ol.timeline a[href^="/runs/"]');
  await record('run');
  await page.click('header nav >> text=Runs');
  await record('runs');
  await page.click('header nav >> text=Pools');
  await record('pools');
  out.meters = await page.locator('meter').count();
  await page.click('header nav >> text=Trend');
  await record('trend');
  out.charts = await page.locator('figure.chart svg').count();
  out.chartLines = await page.locator('figure.chart svg polyline, figure.chart svg circle').count();

  await page.click('text=Log out');
  out.afterLogout = page.url().replace(origin, '');
  await page.goto(`${base}/`);
  out.afterLogoutOverview = page.url().replace(origin, '');
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
