/**
 * docs/reference.md section 5, the faults that need no failover: Redis dies, Kafka dies, a
 * reader instance dies. Each block breaks one part through the launcher's hold files
 * (tools/README.md), checks what a client sees, and brings the part back in afterAll,
 * so the blocks (and the other spec files) do not depend on each other's order.
 */
import { randomBytes } from 'node:crypto';
import { eventually, redisClient, stackFromEnv } from './support';
import { httpReady, isHeld, kafkaAnswers, pidOf, readTopicUntil, redisAnswers, release, stopHeld } from './support/faults';
import { expectProblem, gateway, sleep, uniqueTarget, type CreatedLink } from './support/http';

const stack = stackFromEnv();
const gw = gateway(stack);

jest.setTimeout(240_000);

async function createOk(body: Record<string, unknown> = {}): Promise<CreatedLink> {
  const answer = await gw.create({ url: uniqueTarget('resilience'), ...body });
  if (answer.status !== 201) throw new Error(`create answered ${answer.status}: ${answer.text}`);
  return answer.json;
}

/**
 * Test data made before a fault is injected: retried on a 503 (a 2-core machine under
 * load can time out a create); what is under test uses createOk and is never retried.
 */
async function setupLink(body: Record<string, unknown> = {}): Promise<CreatedLink> {
  let last = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const answer = await gw.create({ url: uniqueTarget('resilience-setup'), ...body });
    if (answer.status === 201) return answer.json;
    last = `${answer.status}: ${answer.text}`;
    if (answer.status !== 503) break;
    await sleep(1000);
  }
  throw new Error(`setup create failed: ${last}`);
}

async function expectRedirect(code: string, location: string, status = 302): Promise<void> {
  const answer = await gw.redirect(code);
  expect({ code, status: answer.status, location: answer.headers.get('location'), body: answer.status === status ? '' : answer.text }).toEqual({
    code,
    status,
    location,
    body: '',
  });
}

async function flushRedis(): Promise<void> {
  const redis = redisClient(stack);
  try {
    await redis.flushall();
  } finally {
    redis.disconnect();
  }
}

/** Brings a held process back if a test left it down; never throws (afterAll). */
async function restore(name: string, previousPid: number | null, ready: () => Promise<void>): Promise<void> {
  if (!isHeld(stack, name)) return;
  await release(stack, name, previousPid, 90_000);
  await ready();
}

describe('Redis down', () => {
  let cached: CreatedLink;
  let uncached: CreatedLink;
  let toUpdate: CreatedLink;
  let redisPid: number | null = null;

  beforeAll(async () => {
    cached = await setupLink();
    uncached = await setupLink({ redirectType: 307 });
    toUpdate = await setupLink();
    await expectRedirect(cached.code, cached.url);
    await expectRedirect(toUpdate.code, toUpdate.url);
    redisPid = await stopHeld(stack, 'redis', { graceMs: 5000 });
  });

  afterAll(async () => {
    await restore('redis', redisPid, () => redisAnswers(stack, 60_000));
  });

  it('Redis is really down', async () => {
    const redis = redisClient(stack);
    redis.on('error', () => undefined);
    try {
      await expect(redis.ping()).rejects.toThrow();
    } finally {
      redis.disconnect();
    }
  });

  it('existing links keep redirecting (from the replicas)', async () => {
    await expectRedirect(cached.code, cached.url);
    await expectRedirect(uncached.code, uncached.url, 307);
    expect((await gw.head(`/${cached.code}`)).status).toBe(302);
    expectProblem(await gw.redirect(`zz${randomBytes(3).toString('hex')}`), 404);
  });

  it('creates keep working, and the new link redirects at once', async () => {
    const links = await Promise.all(Array.from({ length: 5 }, () => createOk()));
    for (const link of links) await expectRedirect(link.code, link.url);
    const details = await gw.details(links[0].code);
    expect(details.status).toBe(200);
    expect(details.json.url).toBe(links[0].url);
  });

  it('an update and a delete are visible to the next redirect', async () => {
    const url = uniqueTarget('updated-without-redis');
    const patched = await gw.patch(toUpdate.code, { url, redirectType: 308 }, toUpdate.manageToken);
    expect(patched.status).toBe(200);
    await expectRedirect(toUpdate.code, url, 308);
    const doomed = await createOk();
    expect((await gw.remove(doomed.code, doomed.manageToken)).status).toBe(204);
    expectProblem(await gw.redirect(doomed.code), 410);
  });

  it('after Redis returns, redirects answer the current state (no stale cache entry)', async () => {
    await release(stack, 'redis', redisPid, 90_000);
    await redisAnswers(stack, 60_000);
    // `toUpdate` was cached (302, old url) before Redis went down and changed while it was down.
    const first = await gw.redirect(toUpdate.code);
    expect({ status: first.status, location: first.headers.get('location') }).toEqual({
      status: 308,
      location: expect.stringContaining('updated-without-redis'),
    });
    await expectRedirect(cached.code, cached.url);
    const link = await createOk();
    await expectRedirect(link.code, link.url);
  });
});

describe('Kafka down', () => {
  let clicked: CreatedLink;
  let kafkaPid: number | null = null;
  const whileDown: { created: CreatedLink[]; updated: CreatedLink | null; deleted: CreatedLink | null } = { created: [], updated: null, deleted: null };
  const clicksWhileDown = 6;
  let clicksBefore = 0;
  // docs/reference.md section 5: click counts stay exact through an outage of at least a minute at
  // full redirect rate. Links made before the outage, redirected as fast as the gateway answers.
  const loadSeconds = Number(process.env.E2E_CLICK_OUTAGE_SECONDS || 62);
  const loadLinks: CreatedLink[] = [];
  const served = new Map<string, number>();

  beforeAll(async () => {
    clicked = await setupLink();
    await expectRedirect(clicked.code, clicked.url);
    clicksBefore = 1;
    for (let i = 0; i < 20; i++) loadLinks.push(await setupLink());
    // The one click is counted before Kafka goes: a baseline the outage must not disturb.
    await eventually(async () => (await gw.details(clicked.code)).json.clicks === clicksBefore, { timeoutMs: 15_000, intervalMs: 300 }).catch(() => undefined);
    kafkaPid = await stopHeld(stack, 'kafka', { graceMs: 15_000 });
  });

  afterAll(async () => {
    await restore('kafka', kafkaPid, () => kafkaAnswers(stack, 90_000));
  });

  it('creates, updates and deletes keep working', async () => {
    for (let i = 0; i < 3; i++) whileDown.created.push(await createOk());
    const updated = await createOk();
    expect((await gw.patch(updated.code, { url: uniqueTarget('kafka-down') }, updated.manageToken)).status).toBe(200);
    whileDown.updated = updated;
    const deleted = await createOk();
    expect((await gw.remove(deleted.code, deleted.manageToken)).status).toBe(204);
    whileDown.deleted = deleted;
    expectProblem(await gw.redirect(deleted.code), 410);
  });

  it('redirects keep working, from the cache and from the readers', async () => {
    for (const link of whileDown.created) await expectRedirect(link.code, link.url);
    await flushRedis();
    for (const link of whileDown.created) await expectRedirect(link.code, link.url);
    for (let i = 0; i < clicksWhileDown; i++) await expectRedirect(clicked.code, clicked.url);
  });

  it(`redirects at full rate for ${loadSeconds} s while Kafka is down: every one answered, no click dropped`, async () => {
    const until = Date.now() + loadSeconds * 1000;
    const failures: string[] = [];
    let answered = 0;
    await Promise.all(
      Array.from({ length: 16 }, async (_, worker) => {
        for (let i = worker; Date.now() < until; i++) {
          const link = loadLinks[i % loadLinks.length];
          const answer = await gw.redirect(link.code);
          if (answer.status === 302) served.set(link.code, (served.get(link.code) ?? 0) + 1);
          else if (failures.length < 5) failures.push(`${link.code}: ${answer.status} ${answer.text}`);
          answered++;
        }
      }),
    );
    process.stdout.write(`[e2e] ${answered} redirects in ${loadSeconds} s of the Kafka outage (${Math.round(answered / loadSeconds)}/s)\n`);
    expect(failures).toEqual([]);
    const metrics = (await fetch(`${stack.baseUrl}/metrics`).then((answer) => answer.text())).split('\n');
    const value = (name: string) => metrics.filter((line) => line.startsWith(name)).reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
    expect(value('shortener_clicks_dropped_total')).toBe(0);
    // Kafka refused the batches: the writer applied them (exactly once per batch id)
    expect(value('shortener_click_fallback_batches_total{outcome="applied"')).toBeGreaterThan(0);
  });

  it('once Kafka is back, the events written meanwhile arrive in url.events (outbox)', async () => {
    await release(stack, 'kafka', kafkaPid, 90_000);
    await kafkaAnswers(stack, 90_000);
    const codes = [...whileDown.created.map((link) => link.code), whileDown.updated!.code, whileDown.deleted!.code];
    const want = (messages: { key: string | null; value: any }[]) =>
      whileDown.created.every((link) => messages.some((m) => m.key === link.code && m.value?.type === 'url.created')) &&
      messages.some((m) => m.key === whileDown.updated!.code && m.value?.type === 'url.updated') &&
      messages.some((m) => m.key === whileDown.deleted!.code && m.value?.type === 'url.deleted');
    const messages = await readTopicUntil(stack, 'url.events', codes, want, 90_000);
    for (const message of messages) {
      expect(message.value).toEqual(
        expect.objectContaining({
          code: message.key,
          type: expect.stringMatching(/^url\.(created|updated|deleted)$/),
          version: expect.any(Number),
          at: expect.any(String),
        }),
      );
    }
    // Each event once (the outbox relays every row exactly once in the normal case).
    const created = messages.filter((m) => m.value?.type === 'url.created');
    expect(new Set(created.map((m) => m.key)).size).toBe(created.length);
  });

  it('click counts catch up exactly', async () => {
    const expected = clicksBefore + clicksWhileDown;
    await eventually(
      async () => {
        const clicks = (await gw.details(clicked.code)).json.clicks;
        if (clicks > expected) throw new Error(`clicks ${clicks} > ${expected}`);
        expect(clicks).toBe(expected);
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    await sleep(3000);
    expect((await gw.details(clicked.code)).json.clicks).toBe(expected);
    // and every redirect of the minute at full rate, once
    const want = Object.fromEntries(loadLinks.map((link) => [link.code, served.get(link.code) ?? 0]));
    const counts = async () => Object.fromEntries(await Promise.all(loadLinks.map(async (link) => [link.code, (await gw.details(link.code)).json.clicks])));
    await eventually(
      async () => {
        const got = await counts();
        const over = loadLinks.filter((link) => got[link.code] > want[link.code]);
        if (over.length > 0)
          throw new Error(`counted more clicks than redirects served: ${JSON.stringify(over.map((link) => [got[link.code], want[link.code]]))}`);
        expect(got).toEqual(want);
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 1000 },
    );
    await sleep(2000);
    expect(await counts()).toEqual(want);
  });

  it('new clicks are counted again within seconds', async () => {
    const link = await setupLink();
    for (let i = 0; i < 3; i++) await expectRedirect(link.code, link.url);
    await eventually(async () => (await gw.details(link.code)).json.clicks === 3, { timeoutMs: 15_000, intervalMs: 500 });
  });
});

describe('a reader instance down', () => {
  const readers = stack.inventory.services.readers;
  const victim = readers[0];
  let readerPid: number | null = null;
  const links: CreatedLink[] = [];

  beforeAll(async () => {
    for (let i = 0; i < 6; i++) links.push(await setupLink());
    readerPid = await stopHeld(stack, victim.name, { graceMs: 3000 });
  });

  afterAll(async () => {
    await restore(victim.name, readerPid, () => httpReady(victim.httpPort, 180_000).catch(() => undefined));
  });

  it('needs a second reader to test this', () => {
    expect(readers.length).toBeGreaterThan(1);
    expect(pidOf(stack, victim.name)).not.toBeNull();
  });

  it('cache misses keep being answered by the other reader', async () => {
    for (let round = 0; round < 2; round++) {
      await flushRedis();
      for (const link of links) await expectRedirect(link.code, link.url);
    }
    expectProblem(await gw.redirect(`zz${randomBytes(3).toString('hex')}`), 404);
  });

  it('details and new links keep working', async () => {
    const link = await createOk();
    await flushRedis();
    await expectRedirect(link.code, link.url);
    const details = await gw.details(links[0].code);
    expect(details.status).toBe(200);
    expect(details.json.code).toBe(links[0].code);
  });

  it('after the reader returns, misses are answered as before', async () => {
    await release(stack, victim.name, readerPid, 90_000);
    // A Nest service can take minutes to start on a loaded 2-core machine.
    await eventually(async () => (await fetch(`http://127.0.0.1:${victim.httpPort}/health/ready`)).status === 200, { timeoutMs: 180_000, intervalMs: 1000 });
    for (let round = 0; round < 2; round++) {
      await flushRedis();
      for (const link of links) await expectRedirect(link.code, link.url);
    }
  });
});
