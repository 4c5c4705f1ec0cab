/**
 * The /admin page in a real browser: Playwright (playwright-core) drives Debian's Chromium
 * (tools/lib/bootstrap.mjs installs it; no browser is ever downloaded). Sign in, see every
 * node, switch a shard over from the page, and see the new primary and epoch arrive over
 * GET /api/cluster/events without a reload. The screenshot goes to the test output.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { allNodes, stackFromEnv } from './support';
import { httpReady, release, stopHeld } from './support/faults';
import { gateway } from './support/http';

const stack = stackFromEnv();
const gw = gateway(stack);
const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const OUTPUT_DIR = process.env.E2E_OUTPUT_DIR || join(stack.stackDir, 'e2e-output');

jest.setTimeout(120_000);

describe('the /admin page (docs/reference.md section 9)', () => {
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    // A phone-sized screen: the page must work there.
    page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('is served with a policy that keeps it self-contained', async () => {
    const answer = await gw.get('/admin');
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^text\/html/);
    expect(answer.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(answer.text).not.toContain(stack.adminToken);
  });

  it('refuses a wrong token and keeps the user on the sign-in form', async () => {
    await page.goto(`${stack.baseUrl}/admin`);
    await page.getByLabel('Admin token').fill(`${stack.adminToken}-wrong`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'The admin token was refused.' }).waitFor();
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
  });

  it('signs in, shows every node and the slot map, switches a shard over and shows the new primary and epoch without a reload', async () => {
    const before = (await gw.get('/api/cluster', { token: stack.adminToken })).json;
    const shard = before.shards[before.shards.length - 1];

    await page.getByLabel('Admin token').fill(stack.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
    // The token stays in the tab and never reaches the address bar.
    expect(page.url()).not.toContain(stack.adminToken);
    expect(await page.evaluate('Object.values(sessionStorage)')).toEqual([stack.adminToken]);

    await page.locator('#epoch', { hasText: String(before.epoch) }).waitFor();
    for (const node of allNodes(stack)) await page.locator(`tr[data-node="${node.name}"]`).waitFor();
    expect(await page.locator('#slot-map span').count()).toBe(before.ring.slots.length);
    await page.locator('#slot-summary', { hasText: `${before.ring.slots.length} slots` }).waitFor();
    await page.locator(`article[data-shard="${shard.id}"] tr[data-role="primary"][data-node="${shard.primary.name}"]`).waitFor();

    await page.getByRole('button', { name: `Switch over shard ${shard.id}` }).click();
    const dialog = page.getByRole('dialog');
    await dialog.filter({ hasText: `from ${shard.primary.name}` }).waitFor();
    await dialog.getByRole('button', { name: 'Switch over' }).click();

    // The stream brings the new epoch: the page is never reloaded.
    const marker = await page.evaluate('window.notReloaded = true');
    await page.locator(`article[data-shard="${shard.id}"] tr[data-role="primary"]:not([data-node="${shard.primary.name}"])`).waitFor({ timeout: 60_000 });
    const after = (await gw.get('/api/cluster', { token: stack.adminToken })).json;
    const moved = after.shards.find((candidate: { id: number }) => candidate.id === shard.id);
    expect(moved.primary.name).not.toBe(shard.primary.name);
    await page.locator('#epoch', { hasText: String(after.epoch) }).waitFor();
    await page.locator(`article[data-shard="${shard.id}"] tr[data-role="primary"][data-node="${moved.primary.name}"]`).waitFor();
    await page.locator('#failovers tbody', { hasText: moved.primary.name }).waitFor();
    expect(await page.evaluate('window.notReloaded')).toBe(marker);

    mkdirSync(OUTPUT_DIR, { recursive: true });
    await page.setViewportSize({ width: 1280, height: 1400 });
    await page.screenshot({ path: join(OUTPUT_DIR, 'admin.png'), fullPage: true });
  });

  it('reconnects by itself when the gateway goes away and comes back', async () => {
    // A graceful stop ends the open streams first (else the gateway could not close).
    const stopped = await stopHeld(stack, 'gateway');
    await page.getByRole('status').filter({ hasText: 'Reconnecting' }).waitFor({ timeout: 20_000 });
    await release(stack, 'gateway', stopped);
    await httpReady(stack.inventory.services.gateway.port);
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor({ timeout: 30_000 });
    for (const node of allNodes(stack)) await page.locator(`tr[data-node="${node.name}"]`).waitFor();
  });
});
