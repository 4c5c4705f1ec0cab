/**
 * The public HTTP API of docs/reference.md section 2 through the gateway, with data placement
 * (section 3) and events (section 4) checked from outside: on every PostgreSQL node,
 * in Redis and in Kafka.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from 'pg';
import { allNodes, eventually, flushAllRedis, reachableHost, redisClient, stackFromEnv, withNode, type StackNode } from './support';
import { readTopicUntil } from './support/faults';
import { expectProblem, gateway, request, sleep, slotOfCode, uniqueAlias, uniqueTarget, type ClusterDocument, type CreatedLink } from './support/http';

const stack = stackFromEnv();
const { inventory } = stack;
const gw = gateway(stack);
const publicBase = inventory.publicBaseUrl.replace(/\/+$/, '');
const publicHost = new URL(publicBase).host;
const GENERATED_CODE = /^[0-9A-Za-z]{7}$/;
const RESERVED = ['api', 'health', 'metrics', 'docs', 'admin', 'static', 'assets', 'favicon.ico', 'robots.txt'];
const CREATED_KEYS = ['code', 'createdAt', 'expiresAt', 'manageToken', 'redirectType', 'shortUrl', 'url'];
const DETAILS_KEYS = ['clicks', 'code', 'createdAt', 'expiresAt', 'redirectType', 'updatedAt', 'url'];

jest.setTimeout(120_000);

async function createOk(body: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<CreatedLink> {
  const answer = await gw.create({ url: uniqueTarget(), ...body }, headers);
  if (answer.status !== 201) throw new Error(`create answered ${answer.status}: ${answer.text}`);
  return answer.json;
}

async function expectRedirect(code: string, location: string, status = 302): Promise<void> {
  const answer = await gw.redirect(code);
  expect({ code, status: answer.status, location: answer.headers.get('location') }).toEqual({ code, status, location });
}

/** Rows of `urls` with these codes, per node name (one connection per node). */
async function codesPerNode(codes: string[]): Promise<Map<string, Set<string>>> {
  const result = new Map<string, Set<string>>();
  await Promise.all(
    allNodes(stack).map(async (node) => {
      const rows = await withNode(
        stack,
        node,
        async (db) => (await db.query<{ code: string }>('SELECT code FROM urls WHERE code = ANY($1::text[])', [codes])).rows,
      );
      result.set(node.name, new Set(rows.map((row) => row.code)));
    }),
  );
  return result;
}

async function clusterDocument(): Promise<ClusterDocument> {
  const answer = await gw.cluster();
  if (answer.status !== 200) throw new Error(`GET /api/cluster answered ${answer.status}: ${answer.text}`);
  return answer.json;
}

function nodeByName(name: string): StackNode {
  const node = allNodes(stack).find((candidate) => candidate.name === name);
  if (!node) throw new Error(`no node ${name} in stack.json`);
  return node;
}

/** Every primary, as the cluster document names them. */
async function primaries(): Promise<StackNode[]> {
  const cluster = await clusterDocument();
  return cluster.shards.map((shard) => nodeByName(shard.primary.name));
}

async function countOnPrimaries(sql: string, values: unknown[]): Promise<number> {
  let total = 0;
  for (const node of await primaries()) {
    total += await withNode(stack, node, async (db: Client) => Number((await db.query(sql, values)).rows[0].n));
  }
  return total;
}

async function withRedis<T>(fn: (redis: ReturnType<typeof redisClient>) => Promise<T>): Promise<T> {
  const redis = redisClient(stack);
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

/** Drops one code's cache entry, so the next redirect is a cache miss (libs/cache key format). */
// One DEL per key: under a Redis Cluster the keys live in different slots.
const dropCached = (...codes: string[]) => withRedis((redis) => Promise.all(codes.map((code) => redis.del(`u:${code}`))));
const flushRedis = () => withRedis((redis) => flushAllRedis(redis));

function randomCode(length = 7): string {
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  return Array.from(randomBytes(length), (byte) => alphabet[byte % alphabet.length]).join('');
}

describe('POST /api/urls', () => {
  it('answers 201 with the link, a Location header and a manage token', async () => {
    const url = uniqueTarget('shape');
    const before = Date.now();
    const answer = await gw.create({ url });
    expect(answer.status).toBe(201);
    expect(answer.headers.get('content-type') ?? '').toMatch(/^application\/json/);
    const body = answer.json as CreatedLink;
    expect(Object.keys(body).sort()).toEqual(CREATED_KEYS);
    expect(body.code).toMatch(GENERATED_CODE);
    expect(body.shortUrl).toBe(`${publicBase}/${body.code}`);
    expect(body.url).toBe(url);
    expect(body.expiresAt).toBeNull();
    expect(body.redirectType).toBe(302);
    expect(typeof body.manageToken).toBe('string');
    expect(body.manageToken.length).toBeGreaterThanOrEqual(16);
    const createdAt = Date.parse(body.createdAt);
    expect(Number.isNaN(createdAt)).toBe(false);
    expect(createdAt).toBeGreaterThanOrEqual(before - 5_000);
    expect(createdAt).toBeLessThanOrEqual(Date.now() + 5_000);
    expect(answer.headers.get('location')).toBe(`/api/urls/${body.code}`);
    await expectRedirect(body.code, url);
  });

  it('echoes expiresAt and redirectType', async () => {
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const link = await createOk({ expiresAt, redirectType: 307 });
    expect(Date.parse(link.expiresAt!)).toBe(Date.parse(expiresAt));
    expect(link.redirectType).toBe(307);
  });

  it('gives 25 concurrent creates distinct codes, each redirecting at once from the gateway', async () => {
    const results = await Promise.all(
      Array.from({ length: 25 }, async (_, i) => {
        const url = uniqueTarget(`concurrent-${i}`);
        const created = await gw.create({ url });
        const redirect = await gw.redirect(created.json?.code ?? 'missing');
        return { url, created, redirect };
      }),
    );
    for (const { url, created, redirect } of results) {
      expect({ status: created.status, body: created.status === 201 ? '' : created.text }).toEqual({ status: 201, body: '' });
      expect(created.json.code).toMatch(GENERATED_CODE);
      expect(created.json.url).toBe(url);
      expect({ status: redirect.status, location: redirect.headers.get('location') }).toEqual({ status: 302, location: url });
    }
    expect(new Set(results.map((result) => result.created.json.code)).size).toBe(results.length);
  });

  it('stores only a hash of the manage token', async () => {
    const link = await createOk();
    const shard = (await clusterDocument()).ring.slots[slotOfCode(link.code)];
    const primary = nodeByName((await clusterDocument()).shards.find((s) => s.id === shard)!.primary.name);
    const row = await withNode(stack, primary, async (db) => (await db.query('SELECT * FROM urls WHERE code = $1', [link.code])).rows[0]);
    expect(row).toBeDefined();
    const token = link.manageToken;
    const tokenBytes = Buffer.from(token);
    for (const [column, value] of Object.entries(row as Record<string, unknown>)) {
      const renderings =
        value instanceof Buffer
          ? [value.toString('utf8'), value.toString('hex'), value.toString('base64'), value.toString('base64url'), value.toString('latin1')]
          : [String(value)];
      for (const rendering of renderings) expect({ column, containsToken: rendering.includes(token) }).toEqual({ column, containsToken: false });
      if (value instanceof Buffer) expect({ column, equalsTokenBytes: value.equals(tokenBytes) }).toEqual({ column, equalsTokenBytes: false });
    }
  });
});

describe('placement (docs/reference.md section 3)', () => {
  it('puts each row on the owning shard: its primary at once, its replicas eventually, no other shard', async () => {
    const links = await Promise.all(Array.from({ length: 12 }, () => createOk()));
    const aliased = await createOk({ alias: uniqueAlias('place') });
    const all = [...links, aliased];
    const codes = all.map((link) => link.code);
    const cluster = await clusterDocument();
    const ownerOf = (code: string) => cluster.ring.slots[slotOfCode(code)];
    const owners = new Set(codes.map(ownerOf));
    expect(owners.size).toBeGreaterThan(1); // 13 codes on one shard out of 4 would mean a broken ring

    const nodesOfShard = new Map(cluster.shards.map((shard) => [shard.id, { primary: shard.primary.name, replicas: shard.replicas.map((r) => r.name) }]));
    // The primary has every row the moment the create answered.
    const now = await codesPerNode(codes);
    for (const code of codes) {
      const shard = nodesOfShard.get(ownerOf(code))!;
      expect({ code, node: shard.primary, present: now.get(shard.primary)!.has(code) }).toEqual({ code, node: shard.primary, present: true });
    }
    // Replicas of the owner get it; nodes of every other shard never have it.
    await eventually(
      async () => {
        const seen = await codesPerNode(codes);
        for (const code of codes) {
          const owner = ownerOf(code);
          for (const shard of cluster.shards) {
            const names = [shard.primary.name, ...shard.replicas.map((r) => r.name)];
            for (const name of names) {
              const present = seen.get(name)!.has(code);
              const expected = shard.id === owner;
              if (!expected) expect({ code, owner, node: name, present }).toEqual({ code, owner, node: name, present: false });
              else if (!present) throw new Error(`${code} (shard ${owner}) not yet on ${name}`);
            }
          }
        }
        return true;
      },
      { timeoutMs: 10_000, intervalMs: 300 },
    );
  });

  it('places a link created with an Idempotency-Key by its own code', async () => {
    const link = await createOk({}, { 'Idempotency-Key': `place-${randomBytes(8).toString('hex')}` });
    const cluster = await clusterDocument();
    const owner = cluster.ring.slots[slotOfCode(link.code)];
    const seen = await codesPerNode([link.code]);
    const holders = [...seen].filter(([, codes]) => codes.has(link.code)).map(([name]) => name);
    const shardNodes = inventory.shards[owner].nodes.map((node) => node.name);
    expect(holders.length).toBeGreaterThan(0);
    for (const holder of holders) expect(shardNodes).toContain(holder);
  });
});

describe('redirects without Redis contents', () => {
  it('keeps redirecting after FLUSHALL, and a link created just before the flush redirects at once', async () => {
    const old = await createOk({ redirectType: 301 });
    await expectRedirect(old.code, old.url, 301);
    const fresh = await createOk();
    await flushRedis();
    await expectRedirect(fresh.code, fresh.url);
    await expectRedirect(old.code, old.url, 301);
    // Again, with the cache refilled or not: still the same answer.
    await expectRedirect(fresh.code, fresh.url);
  });

  it('redirects a link created right after a flush, with the cache entry dropped at once', async () => {
    await flushRedis();
    const links = await Promise.all(Array.from({ length: 6 }, () => createOk()));
    await dropCached(...links.map((link) => link.code));
    for (const link of links) await expectRedirect(link.code, link.url);
  });
});

describe('aliases', () => {
  it('accepts a valid alias (3 and 32 characters too) and redirects by it', async () => {
    for (const alias of [uniqueAlias('ok_'), randomCode(3), `${randomCode(10)}_-${'x'.repeat(20)}`]) {
      const url = uniqueTarget('alias');
      const answer = await gw.create({ url, alias });
      expect({ alias, status: answer.status, text: answer.status === 201 ? '' : answer.text }).toEqual({ alias, status: 201, text: '' });
      expect(answer.json.code).toBe(alias);
      expect(answer.json.shortUrl).toBe(`${publicBase}/${alias}`);
      expect(answer.headers.get('location')).toBe(`/api/urls/${alias}`);
      await expectRedirect(alias, url);
    }
  });

  it('treats aliases as case-sensitive codes', async () => {
    const lower = `case-${randomBytes(4).toString('hex')}`;
    const upper = lower.toUpperCase();
    const a = await createOk({ alias: lower });
    const b = await createOk({ alias: upper });
    await expectRedirect(lower, a.url);
    await expectRedirect(upper, b.url);
  });

  it('answers 409 for a taken alias, and still after the link was deleted', async () => {
    const alias = uniqueAlias('taken');
    const first = await createOk({ alias });
    const again = await gw.create({ url: uniqueTarget(), alias });
    expectProblem(again, 409);
    expect((await gw.remove(alias, first.manageToken)).status).toBe(204);
    const afterDelete = await gw.create({ url: uniqueTarget(), alias });
    expectProblem(afterDelete, 409);
    const redirect = await gw.redirect(alias);
    expectProblem(redirect, 410);
  });

  it.each(RESERVED)('rejects the reserved word %s with 400', async (alias) => {
    const answer = await gw.create({ url: uniqueTarget(), alias });
    expectProblem(answer, 400);
    expect((answer.json as { errors?: { field: string }[] }).errors?.map((error) => error.field)).toContain('alias');
  });

  it.each([
    ['too short', 'ab'],
    ['too long', 'a'.repeat(33)],
    ['a dot', 'a.b.c'],
    ['a space', 'has space'],
    ['a slash', 'a/b/c'],
    ['non-ASCII letters', 'ünïcode'],
    ['empty', ''],
  ])('rejects an alias with %s (%j) with 400', async (_, alias) => {
    const answer = await gw.create({ url: uniqueTarget(), alias });
    expectProblem(answer, 400);
    expect((answer.json as { errors?: { field: string }[] }).errors?.map((error) => error.field)).toContain('alias');
  });
});

describe('bad input on create', () => {
  const post = (body: string, contentType = 'application/json') =>
    request(stack.baseUrl, '/api/urls', { method: 'POST', body, headers: { 'content-type': contentType } });

  it('answers 400 for malformed JSON', async () => {
    expectProblem(await post('{"url": "https://example.com/"'), 400);
    expectProblem(await post('not json at all'), 400);
  });

  it('answers 400 for a body that is not a JSON object', async () => {
    expectProblem(await post('[]'), 400);
    expectProblem(await post('"https://example.com/"'), 400);
    expectProblem(await post('{}'), 400);
  });

  it('answers 400 naming unknown fields', async () => {
    const answer = await gw.create({ url: uniqueTarget(), surprise: 1 });
    expectProblem(answer, 400);
    expect((answer.json as { errors?: { field: string }[] }).errors?.map((error) => error.field)).toContain('surprise');
  });

  it.each([
    ['missing', undefined],
    ['not a string', 12345],
    ['ftp', 'ftp://example.com/file'],
    ['javascript', 'javascript:alert(1)'],
    ['mailto', 'mailto:someone@example.com'],
    ['relative', '/just/a/path'],
    ['schemeless', 'example.com/path'],
    ['without a host', 'http://'],
    ['with a space', 'https://exa mple.com/'],
    ['with a tab', 'https://example.com/a\tb'],
    ['with a newline', 'https://example.com/a\nb'],
    ['with a control character', 'https://example.com/\u0007'],
    ['with DEL', 'https://example.com/\u007f'],
    ['over 2048 characters', `https://example.com/${'a'.repeat(2049 - 20)}`],
    ['at the gateway itself', `${publicBase}/abcdefg`],
    ['at the gateway itself, other case', `${publicBase.replace(/^http/, 'HTTP').toUpperCase()}/x`],
    ['at the gateway host over the other scheme', `${new URL(publicBase).protocol === 'https:' ? 'http' : 'https'}://${publicHost}/x`],
  ])('answers 400 for a url %s', async (_, url) => {
    const answer = await gw.create(url === undefined ? {} : { url });
    expectProblem(answer, 400);
    expect((answer.json as { errors?: { field: string }[] }).errors?.map((error) => error.field)).toContain('url');
  });

  it('accepts a url of exactly 2048 characters', async () => {
    const url = `https://example.com/${'b'.repeat(2048 - 20 - 12)}${randomBytes(6).toString('hex')}`;
    expect(url).toHaveLength(2048);
    const answer = await gw.create({ url });
    expect(answer.status).toBe(201);
    await expectRedirect(answer.json.code, url);
  });

  it.each([
    ['in the past', new Date(Date.now() - 60_000).toISOString()],
    ['now-ish (1 s ago)', new Date(Date.now() - 1_000).toISOString()],
    ['not RFC 3339', 'tomorrow'],
    ['a date only', '2099-01-01'],
    ['without an offset', '2099-01-01T00:00:00'],
    ['an impossible date', '2099-02-31T00:00:00Z'],
    ['a number', 4102444800000],
  ])('answers 400 for expiresAt %s', async (_, expiresAt) => {
    const answer = await gw.create({ url: uniqueTarget(), expiresAt });
    expectProblem(answer, 400);
    expect((answer.json as { errors?: { field: string }[] }).errors?.map((error) => error.field)).toContain('expiresAt');
  });

  it.each([303, 300, 200, '302'])('answers 400 for redirectType %j', async (redirectType) => {
    const answer = await gw.create({ url: uniqueTarget(), redirectType });
    expectProblem(answer, 400);
    expect((answer.json as { errors?: { field: string }[] }).errors?.map((error) => error.field)).toContain('redirectType');
  });

  it('answers 413 for a body over 16 KiB', async () => {
    const body = JSON.stringify({ url: `https://example.com/${'c'.repeat(17 * 1024)}` });
    expect(Buffer.byteLength(body)).toBeGreaterThan(16 * 1024);
    expectProblem(await post(body), 413);
  });

  it('answers 415 for a body that is not application/json', async () => {
    const body = JSON.stringify({ url: uniqueTarget() });
    expectProblem(await post(body, 'text/plain'), 415);
    expectProblem(await post(body, 'application/x-www-form-urlencoded'), 415);
  });

  it('created nothing for any rejected request', async () => {
    // A marker URL sent with a broken field never becomes a row anywhere.
    const url = uniqueTarget('rejected');
    for (const body of [
      { url, redirectType: 303 },
      { url, alias: 'api' },
      { url, extra: true },
      { url, expiresAt: 'x' },
    ]) {
      expect((await gw.create(body)).status).toBe(400);
    }
    expect(await countOnPrimaries('SELECT count(*) AS n FROM urls WHERE url = $1', [url])).toBe(0);
  });
});

describe('GET /{code}', () => {
  it.each([
    ['wrong characters', '/a.b'],
    ['too short', '/ab'],
    ['too long (33)', `/${'a'.repeat(33)}`],
    ['percent-encoded', '/abc%20def'],
    ['a tilde', '/abc~def'],
  ])('answers 404 problem for a path that cannot be a code: %s', async (_, path) => {
    const answer = await gw.get(path);
    expectProblem(answer, 404);
  });

  it('answers 404 problem for an unknown valid-looking code, twice (negative caching does not change it)', async () => {
    const code = randomCode();
    expectProblem(await gw.redirect(code), 404);
    expectProblem(await gw.redirect(code), 404);
  });

  it('a code first looked up as unknown redirects once created with that alias', async () => {
    const alias = uniqueAlias('late');
    expectProblem(await gw.redirect(alias), 404);
    const link = await createOk({ alias });
    await expectRedirect(alias, link.url);
  });

  it('answers HEAD like GET, without a body', async () => {
    const link = await createOk({ redirectType: 308 });
    for (const miss of [false, true]) {
      if (miss) await dropCached(link.code);
      const head = await gw.head(`/${link.code}`);
      expect({ status: head.status, location: head.headers.get('location'), body: head.text }).toEqual({ status: 308, location: link.url, body: '' });
    }
    const unknown = await gw.head(`/${randomCode()}`);
    expect(unknown.status).toBe(404);
    expect(unknown.text).toBe('');
    expect((await gw.head('/a.b')).status).toBe(404);
  });

  it.each([301, 302, 307, 308])('honours redirectType %i, from the cache and from a reader', async (redirectType) => {
    const link = await createOk({ redirectType });
    expect(link.redirectType).toBe(redirectType);
    await expectRedirect(link.code, link.url, redirectType);
    await dropCached(link.code);
    await expectRedirect(link.code, link.url, redirectType);
  });

  it('defaults to 302', async () => {
    const link = await createOk();
    expect(link.redirectType).toBe(302);
    await dropCached(link.code);
    await expectRedirect(link.code, link.url, 302);
  });
});

describe('expiry', () => {
  it('redirects until expiresAt, then answers 410 (redirect and details, cached or not)', async () => {
    const expiresAt = new Date(Date.now() + 2_500).toISOString();
    const link = await createOk({ expiresAt });
    await expectRedirect(link.code, link.url);
    expect((await gw.details(link.code)).status).toBe(200);
    await sleep(Math.max(0, Date.parse(expiresAt) - Date.now()) + 500);
    expectProblem(await gw.redirect(link.code), 410);
    expectProblem(await gw.details(link.code), 410);
    expect((await gw.head(`/${link.code}`)).status).toBe(410);
    await dropCached(link.code);
    expectProblem(await gw.redirect(link.code), 410);
  });

  it('answers 410 for an expired link never served from the cache', async () => {
    const expiresAt = new Date(Date.now() + 2_000).toISOString();
    const link = await createOk({ expiresAt });
    await sleep(Math.max(0, Date.parse(expiresAt) - Date.now()) + 500);
    await dropCached(link.code);
    expectProblem(await gw.redirect(link.code), 410);
  });
});

describe('GET /api/urls/{code}', () => {
  it('answers 200 with the link and its click count', async () => {
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const link = await createOk({ expiresAt, redirectType: 301 });
    const answer = await gw.details(link.code);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type') ?? '').toMatch(/^application\/json/);
    expect(Object.keys(answer.json).sort()).toEqual(DETAILS_KEYS);
    expect(answer.json).toEqual({
      code: link.code,
      url: link.url,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
      expiresAt: expect.any(String),
      redirectType: 301,
      clicks: 0,
    });
    expect(Date.parse(answer.json.createdAt)).toBe(Date.parse(link.createdAt));
    expect(Date.parse(answer.json.updatedAt)).toBeGreaterThanOrEqual(Date.parse(answer.json.createdAt));
    expect(Date.parse(answer.json.expiresAt!)).toBe(Date.parse(expiresAt));
  });

  it('answers with expiresAt null for a link without expiry', async () => {
    const link = await createOk();
    const answer = await gw.details(link.code);
    expect(answer.status).toBe(200);
    expect(answer.json.expiresAt).toBeNull();
    expect(answer.json.redirectType).toBe(302);
  });

  it('answers 404 for an unknown code and for a path that cannot be a code', async () => {
    expectProblem(await gw.details(randomCode()), 404);
    expectProblem(await gw.get('/api/urls/a.b'), 404);
  });

  it('answers 410 for a deleted link', async () => {
    const link = await createOk();
    expect((await gw.remove(link.code, link.manageToken)).status).toBe(204);
    expectProblem(await gw.details(link.code), 410);
  });
});

describe('PATCH and DELETE /api/urls/{code}', () => {
  it('answers 401 without Authorization and 403 with a wrong token, changing nothing', async () => {
    const link = await createOk();
    const other = await createOk();
    const noAuth = await gw.patch(link.code, { url: uniqueTarget() });
    expectProblem(noAuth, 401);
    expectProblem(await gw.patch(link.code, { url: uniqueTarget() }, 'not-the-token'), 403);
    expectProblem(await gw.patch(link.code, { url: uniqueTarget() }, other.manageToken), 403);
    expectProblem(
      await gw.call(`/api/urls/${link.code}`, { method: 'PATCH', body: { url: uniqueTarget() }, headers: { authorization: `Basic ${link.manageToken}` } }),
      403,
    );
    expectProblem(await gw.remove(link.code), 401);
    expectProblem(await gw.remove(link.code, 'not-the-token'), 403);
    expectProblem(await gw.remove(link.code, other.manageToken), 403);
    await expectRedirect(link.code, link.url);
    expect((await gw.details(link.code)).json.url).toBe(link.url);
  });

  it('updates with the manage token; the very next redirect sees it', async () => {
    const link = await createOk();
    const before = await gw.details(link.code);
    const url = uniqueTarget('updated');
    const answer = await gw.patch(link.code, { url, redirectType: 307 }, link.manageToken);
    expect(answer.status).toBe(200);
    expect(Object.keys(answer.json).sort()).toEqual(DETAILS_KEYS);
    expect(answer.json).toMatchObject({ code: link.code, url, redirectType: 307, expiresAt: null });
    expect(Date.parse(answer.json.updatedAt)).toBeGreaterThan(Date.parse(before.json.updatedAt));
    expect(Date.parse(answer.json.createdAt)).toBe(Date.parse(link.createdAt));
    await expectRedirect(link.code, url, 307);
    expect((await gw.details(link.code)).json).toMatchObject({ url, redirectType: 307 });
  });

  it('updates with the admin token, several times in a row, each visible at once', async () => {
    const link = await createOk();
    for (const redirectType of [301, 308, 302] as const) {
      const url = uniqueTarget(`admin-${redirectType}`);
      const answer = await gw.patch(link.code, { url, redirectType }, stack.adminToken);
      expect(answer.status).toBe(200);
      await expectRedirect(link.code, url, redirectType);
    }
  });

  it('sets and clears expiresAt', async () => {
    const link = await createOk();
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const set = await gw.patch(link.code, { expiresAt }, link.manageToken);
    expect(set.status).toBe(200);
    expect(Date.parse(set.json.expiresAt!)).toBe(Date.parse(expiresAt));
    const cleared = await gw.patch(link.code, { expiresAt: null }, link.manageToken);
    expect(cleared.status).toBe(200);
    expect(cleared.json.expiresAt).toBeNull();
    expect(cleared.json.url).toBe(link.url);
  });

  it('an update is visible to a redirect served by a reader after the cache was flushed', async () => {
    const link = await createOk();
    await expectRedirect(link.code, link.url);
    const url = uniqueTarget('after-flush');
    expect((await gw.patch(link.code, { url }, link.manageToken)).status).toBe(200);
    await flushRedis();
    await expectRedirect(link.code, url);
  });

  it('validates the PATCH body', async () => {
    const link = await createOk();
    const patchRaw = (body: string, contentType = 'application/json') =>
      gw.call(`/api/urls/${link.code}`, { method: 'PATCH', body, headers: { 'content-type': contentType }, token: link.manageToken });
    for (const [body, field] of [
      [{ url: 'ftp://example.com/' }, 'url'],
      [{ url: `${publicBase}/x` }, 'url'],
      [{ url: 'https://example.com/\u0000' }, 'url'],
      [{ redirectType: 303 }, 'redirectType'],
      [{ expiresAt: new Date(Date.now() - 60_000).toISOString() }, 'expiresAt'],
      [{ expiresAt: 'soon' }, 'expiresAt'],
      [{ code: 'other' }, 'code'],
      [{ alias: 'something' }, 'alias'],
    ] as const) {
      const answer = await gw.patch(link.code, body, link.manageToken);
      expectProblem(answer, 400);
      expect({ body, fields: (answer.json as { errors?: { field: string }[] }).errors?.map((error) => error.field) }).toEqual({
        body,
        fields: expect.arrayContaining([field]),
      });
    }
    expectProblem(await patchRaw('{"url": '), 400);
    expectProblem(await patchRaw(JSON.stringify({ url: uniqueTarget() }), 'text/plain'), 415);
    expectProblem(await patchRaw(JSON.stringify({ url: `https://example.com/${'d'.repeat(17 * 1024)}` })), 413);
    // Nothing of it was applied.
    await expectRedirect(link.code, link.url);
  });

  it('answers 404 for an unknown code and 410 for a deleted one', async () => {
    expectProblem(await gw.patch(randomCode(), { url: uniqueTarget() }, stack.adminToken), 404);
    expectProblem(await gw.remove(randomCode(), stack.adminToken), 404);
    const link = await createOk();
    expect((await gw.remove(link.code, link.manageToken)).status).toBe(204);
    expectProblem(await gw.patch(link.code, { url: uniqueTarget() }, link.manageToken), 410);
    expectProblem(await gw.remove(link.code, link.manageToken), 410);
    expectProblem(await gw.remove(link.code, stack.adminToken), 410);
  });

  it('deletes with the manage token: 204 and the very next redirect is 410', async () => {
    const link = await createOk();
    await expectRedirect(link.code, link.url);
    const answer = await gw.remove(link.code, link.manageToken);
    expect(answer.status).toBe(204);
    expect(answer.text).toBe('');
    expectProblem(await gw.redirect(link.code), 410);
    expect((await gw.head(`/${link.code}`)).status).toBe(410);
    await flushRedis();
    expectProblem(await gw.redirect(link.code), 410);
  });

  it('deletes with the admin token', async () => {
    const link = await createOk();
    expect((await gw.remove(link.code, stack.adminToken)).status).toBe(204);
    expectProblem(await gw.redirect(link.code), 410);
    expectProblem(await gw.details(link.code), 410);
  });
});

describe('Idempotency-Key', () => {
  const key = () => `e2e-${randomBytes(12).toString('hex')}`;

  it('answers the same key and body with the first response, creating one row', async () => {
    const idempotencyKey = key();
    const body = { url: uniqueTarget('idem'), redirectType: 301 };
    const first = await gw.create(body, { 'Idempotency-Key': idempotencyKey });
    expect(first.status).toBe(201);
    const second = await gw.create(body, { 'Idempotency-Key': idempotencyKey });
    expect(second.status).toBe(201);
    expect(second.json).toEqual(first.json);
    expect(second.headers.get('location')).toBe(first.headers.get('location'));
    expect(await countOnPrimaries('SELECT count(*) AS n FROM urls WHERE url = $1', [body.url])).toBe(1);
    await expectRedirect(first.json.code, body.url, 301);
  });

  it('answers 422 for the same key with another body', async () => {
    const idempotencyKey = key();
    const url = uniqueTarget('idem-a');
    expect((await gw.create({ url }, { 'Idempotency-Key': idempotencyKey })).status).toBe(201);
    expectProblem(await gw.create({ url: uniqueTarget('idem-b') }, { 'Idempotency-Key': idempotencyKey }), 422);
    expectProblem(await gw.create({ url, redirectType: 308 }, { 'Idempotency-Key': idempotencyKey }), 422);
  });

  it('answers 422 for the same key with another body that names an alias (on any shard)', async () => {
    const cluster = await clusterDocument();
    const idempotencyKey = key();
    const url = uniqueTarget('idem-alias');
    expect((await gw.create({ url }, { 'Idempotency-Key': idempotencyKey })).status).toBe(201);
    // Aliases owned by every shard, so one of them is not the key's shard.
    const byShard = new Map<number, string>();
    while (byShard.size < cluster.shards.length) {
      const alias = uniqueAlias('idem');
      byShard.set(cluster.ring.slots[slotOfCode(alias)], alias);
    }
    for (const alias of byShard.values()) {
      const answer = await gw.create({ url, alias }, { 'Idempotency-Key': idempotencyKey });
      expectProblem(answer, 422);
    }
    expect(await countOnPrimaries('SELECT count(*) AS n FROM urls WHERE url = $1', [url])).toBe(1);
  });

  it('gives concurrent requests with the same key the same code, creating one row', async () => {
    const idempotencyKey = key();
    const body = { url: uniqueTarget('idem-concurrent') };
    const answers = await Promise.all(Array.from({ length: 10 }, () => gw.create(body, { 'Idempotency-Key': idempotencyKey })));
    for (const answer of answers) expect({ status: answer.status, body: answer.status === 201 ? '' : answer.text }).toEqual({ status: 201, body: '' });
    expect(new Set(answers.map((answer) => answer.json.code)).size).toBe(1);
    expect(await countOnPrimaries('SELECT count(*) AS n FROM urls WHERE url = $1', [body.url])).toBe(1);
  });

  it('replays an aliased create too', async () => {
    const idempotencyKey = key();
    const body = { url: uniqueTarget('idem-aliased'), alias: uniqueAlias('idem') };
    const first = await gw.create(body, { 'Idempotency-Key': idempotencyKey });
    const second = await gw.create(body, { 'Idempotency-Key': idempotencyKey });
    expect([first.status, second.status]).toEqual([201, 201]);
    expect(second.json).toEqual(first.json);
  });
});

describe('click counts', () => {
  it('counts N redirects exactly (cached and not), within seconds, and never more', async () => {
    const link = await createOk();
    const n = 9;
    for (let i = 0; i < n; i++) {
      if (i % 3 === 0) await dropCached(link.code);
      await expectRedirect(link.code, link.url);
    }
    // Not redirects: details, HEAD? (HEAD is not counted here), 404s of other codes.
    await gw.details(link.code);
    await eventually(
      async () => {
        const clicks = (await gw.details(link.code)).json.clicks;
        if (clicks > n) throw new Error(`clicks ${clicks} > ${n}`);
        expect(clicks).toBe(n);
        return true;
      },
      { timeoutMs: 8_000, intervalMs: 250 },
    );
    await sleep(4_000);
    expect((await gw.details(link.code)).json.clicks).toBe(n);
  });

  it('counts redirects of many links at once', async () => {
    const links = await Promise.all(Array.from({ length: 5 }, () => createOk()));
    const counts = links.map((_, i) => i + 1);
    await Promise.all(
      links.map(async (link, i) => {
        for (let j = 0; j < counts[i]; j++) await expectRedirect(link.code, link.url);
      }),
    );
    await eventually(
      async () => {
        const seen = await Promise.all(links.map(async (link) => (await gw.details(link.code)).json.clicks));
        expect(seen).toEqual(counts);
        return true;
      },
      { timeoutMs: 8_000, intervalMs: 300 },
    );
    await sleep(3_000);
    expect(await Promise.all(links.map(async (link) => (await gw.details(link.code)).json.clicks))).toEqual(counts);
  });
});

describe('events (url.events)', () => {
  it('publishes url.created, url.updated and url.deleted keyed by the code, in order', async () => {
    const link = await createOk();
    expect((await gw.patch(link.code, { url: uniqueTarget('event') }, link.manageToken)).status).toBe(200);
    expect((await gw.remove(link.code, link.manageToken)).status).toBe(204);
    const messages = await readTopicUntil(
      stack,
      'url.events',
      [link.code],
      (seen) => ['url.created', 'url.updated', 'url.deleted'].every((type) => seen.some((m) => m.value?.type === type)),
      30_000,
    );
    for (const message of messages) {
      expect(message.key).toBe(link.code);
      expect(typeof message.value).toBe('object');
      expect(message.value).toEqual(
        expect.objectContaining({ type: expect.any(String), code: link.code, version: expect.any(Number), at: expect.any(String) }),
      );
      expect(Number.isNaN(Date.parse(message.value.at))).toBe(false);
    }
    const order = [...messages].sort((a, b) => Number(BigInt(a.offset) - BigInt(b.offset))).map((m) => m.value.type);
    expect(new Set(messages.map((m) => m.partition)).size).toBe(1);
    expect(order).toEqual(['url.created', 'url.updated', 'url.deleted']);
  });
});

describe('admin API', () => {
  it('answers 401 without a token and 403 with a wrong one', async () => {
    expectProblem(await gw.get('/api/cluster'), 401);
    expectProblem(await gw.cluster('wrong-token'), 403);
    const link = await createOk();
    expectProblem(await gw.cluster(link.manageToken), 403);
    expectProblem(await gw.call('/api/cluster/shards/0/switchover', { method: 'POST' }), 401);
    expectProblem(await gw.call('/api/cluster/shards/0/switchover', { method: 'POST', token: 'wrong-token' }), 403);
  });

  it('GET /api/cluster has the shape of docs/reference.md section 2', async () => {
    const cluster = await eventually(
      async () => {
        const document = await clusterDocument();
        const nodes = document.shards.flatMap((shard) => [shard.primary, ...shard.replicas]);
        if (!nodes.every((node) => node.healthy)) throw new Error(`not every node healthy yet: ${JSON.stringify(nodes)}`);
        return document;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    expect(Object.keys(cluster).sort()).toEqual(['epoch', 'failovers', 'kafka', 'redis', 'replicationMode', 'ring', 'shards']);
    expect(Number.isInteger(cluster.epoch)).toBe(true);
    expect(cluster.epoch).toBeGreaterThanOrEqual(0);
    expect(cluster.replicationMode).toBe(inventory.replicationMode);
    expect(Object.keys(cluster.ring).sort()).toEqual(['algorithm', 'slots']);
    expect(cluster.ring.algorithm).toBe('crc32-slots');
    expect(cluster.ring.slots).toHaveLength(1024);
    const shardCount = inventory.shards.length;
    for (const shard of cluster.ring.slots) expect(Number.isInteger(shard) && shard >= 0 && shard < shardCount).toBe(true);
    // A cluster that never grew: slot s belongs to shard s % N.
    expect(cluster.ring.slots.every((shard, slot) => shard === slot % shardCount)).toBe(true);

    expect(cluster.shards.map((shard) => shard.id)).toEqual(inventory.shards.map((shard) => shard.id));
    for (const shard of cluster.shards) {
      expect(Object.keys(shard).sort()).toEqual(['id', 'primary', 'replicas']);
      const inventoryNodes = inventory.shards[shard.id].nodes;
      const names = [shard.primary.name, ...shard.replicas.map((node) => node.name)].sort();
      expect(names).toEqual(inventoryNodes.map((node) => node.name).sort());
      const check = (node: (typeof shard)['primary'], role: 'primary' | 'replica') => {
        expect(Object.keys(node).sort()).toEqual(['healthy', 'host', 'lagBytes', 'lagSeconds', 'name', 'port', 'role']);
        const known = inventoryNodes.find((candidate) => candidate.name === node.name)!;
        expect({ name: node.name, host: node.host, port: node.port, role: node.role, healthy: node.healthy }).toEqual({
          name: known.name,
          host: known.host,
          port: known.port,
          role,
          healthy: true,
        });
        expect(node.lagBytes === null || typeof node.lagBytes === 'number').toBe(true);
        expect(node.lagSeconds === null || typeof node.lagSeconds === 'number').toBe(true);
      };
      check(shard.primary, 'primary');
      expect(shard.replicas.length).toBe(inventoryNodes.length - 1);
      for (const replica of shard.replicas) {
        check(replica, 'replica');
        expect(typeof replica.lagBytes).toBe('number');
      }
    }
    expect(Array.isArray(cluster.failovers)).toBe(true);
    for (const failover of cluster.failovers) {
      expect(failover).toEqual(
        expect.objectContaining({
          shard: expect.any(Number),
          at: expect.any(String),
          from: expect.any(String),
          to: expect.any(String),
          reason: expect.any(String),
          durationMs: expect.any(Number),
        }),
      );
    }
    expect(cluster.redis).toEqual({
      host: inventory.redis.host,
      port: inventory.redis.port,
      ...(inventory.redis.cluster ? { cluster: { nodes: inventory.redis.cluster.nodes } } : {}),
    });
    expect(cluster.kafka).toEqual({ brokers: inventory.kafka.brokers });
  });

  it('names as primary the node that is not in recovery', async () => {
    const cluster = await clusterDocument();
    for (const shard of cluster.shards) {
      const inRecovery = await withNode(stack, nodeByName(shard.primary.name), async (db) => (await db.query('SELECT pg_is_in_recovery() AS r')).rows[0].r);
      expect({ shard: shard.id, primary: shard.primary.name, inRecovery }).toEqual({ shard: shard.id, primary: shard.primary.name, inRecovery: false });
    }
  });

  it('answers 404 for the switchover of a shard that does not exist', async () => {
    const answer = await gw.call('/api/cluster/shards/99/switchover', { method: 'POST', token: stack.adminToken });
    expectProblem(answer, 404);
  });
});

describe('operations', () => {
  it('serves the OpenAPI UI at /docs', async () => {
    const answer = await request(stack.baseUrl, '/docs');
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type') ?? '').toMatch(/text\/html/);
    expect(answer.text).toMatch(/<html/i);
  });

  it('serves an OpenAPI 3 document at /docs/json with every route and the create schema', async () => {
    const answer = await request(stack.baseUrl, '/docs/json');
    expect(answer.status).toBe(200);
    const document = answer.json ?? JSON.parse(answer.text);
    expect(String(document.openapi)).toMatch(/^3\./);
    for (const path of ['/api/urls', '/api/urls/{code}', '/api/cluster', '/{code}', '/api/cluster/shards/{id}/switchover']) {
      expect({ path, present: path in document.paths }).toEqual({ path, present: true });
    }
    expect(document.paths['/api/urls'].post).toBeDefined();
    expect(document.paths['/{code}'].get).toBeDefined();
    expect(Object.keys(document.paths['/api/urls/{code}'])).toEqual(expect.arrayContaining(['get', 'patch', 'delete']));
    const schemas = document.components?.schemas ?? {};
    const resolve = (schema: any): any => (schema?.$ref ? schemas[schema.$ref.split('/').pop()] : schema);
    const createBody = resolve(document.paths['/api/urls'].post.requestBody?.content?.['application/json']?.schema);
    expect(createBody).toBeDefined();
    expect(Object.keys(createBody.properties ?? {}).sort()).toEqual(['alias', 'expiresAt', 'redirectType', 'url']);
    expect(createBody.required).toEqual(['url']);
    expect(Object.values(schemas).some((schema: any) => schema.properties?.url && schema.properties?.alias)).toBe(true);
  });

  const services: [string, number][] = [
    ['gateway', inventory.services.gateway.port],
    ['writer', inventory.services.writer.httpPort],
    ...inventory.services.readers.map((reader): [string, number] => [reader.name, reader.httpPort]),
    ...inventory.services.monitors.map((monitor): [string, number] => [monitor.name, monitor.httpPort]),
  ];

  // Locally every service listens on 127.0.0.1; under compose each is its container's address.
  const serviceBase = async (name: string, port: number) => `http://${inventory.target === 'compose' ? await reachableHost(stack, name) : '127.0.0.1'}:${port}`;

  it.each(services)('%s (port %i) answers /health/live, /health/ready and /metrics', async (name, port) => {
    const base = await serviceBase(name, port);
    expect((await request(base, '/health/live')).status).toBe(200);
    await eventually(async () => (await request(base, '/health/ready')).status === 200, { timeoutMs: 15_000, intervalMs: 500 });
    const metrics = await request(base, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type') ?? '').toMatch(/^text\/plain/);
    expect(metrics.text).toMatch(/^# HELP \S+ /m);
    expect(metrics.text).toMatch(/^# TYPE \S+ (counter|gauge|histogram|summary|untyped)$/m);
    const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? [-+]?([0-9.]+([eE][-+]?[0-9]+)?|NaN|Inf)( -?[0-9]+)?$/;
    const lines = metrics.text.split('\n').filter((line) => line.length > 0 && !line.startsWith('#'));
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect({ line, valid: sample.test(line) }).toEqual({ line, valid: true });
  });

  it.each(services)('%s (port %i) answers an unknown path with problem+json (one writer for every service)', async (name, port) => {
    const answer = await request(await serviceBase(name, port), '/api/no-such-route');
    expectProblem(answer, 404);
  });
});
