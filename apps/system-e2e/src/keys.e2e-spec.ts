/**
 * docs/reference.md section 8 on the real stack, through the gateway: API keys (issued
 * once, stored as a hash, revoked everywhere within 5 s), ownership of links, the per-key
 * create quota, and GET /api/urls merged across every shard with cursors that hold while
 * links are created and deleted between pages.
 */
import { createHash } from 'node:crypto';
import { allNodes, currentPrimary, eventually, stackFromEnv, withNode } from './support';
import { expectProblem, gateway, request, uniqueTarget, type CreatedLink, type LinkDetails } from './support/http';

const stack = stackFromEnv();
const gw = gateway(stack);
const KEY_FIELDS = ['createdAt', 'id', 'key', 'name', 'rateLimitPerMinute'];
const DETAILS_KEYS = ['clicks', 'code', 'createdAt', 'expiresAt', 'redirectType', 'updatedAt', 'url'];

jest.setTimeout(180_000);

interface IssuedKey {
  id: string;
  name: string;
  key: string;
  rateLimitPerMinute: number;
  createdAt: string;
}

interface Page {
  items: LinkDetails[];
  nextCursor: string | null;
}

async function issueKey(body: Record<string, unknown> = {}): Promise<IssuedKey> {
  const answer = await gw.call<IssuedKey>('/api/keys', { method: 'POST', body: { name: `e2e ${Date.now()}`, ...body }, token: stack.adminToken });
  if (answer.status !== 201) throw new Error(`POST /api/keys answered ${answer.status}: ${answer.text}`);
  return answer.json;
}

async function createWith(key: string, body: Record<string, unknown> = {}, header: 'bearer' | 'x-api-key' = 'x-api-key'): Promise<CreatedLink> {
  const headers: Record<string, string> = header === 'bearer' ? { authorization: `Bearer ${key}` } : { 'x-api-key': key };
  const answer = await gw.create({ url: uniqueTarget('owned'), ...body }, headers);
  if (answer.status !== 201) throw new Error(`create answered ${answer.status}: ${answer.text}`);
  return answer.json;
}

async function listPage(query: string, credential: { key?: string; token?: string }): Promise<Page> {
  const headers: Record<string, string> = credential.key ? { 'x-api-key': credential.key } : {};
  const answer = await gw.get<Page>(`/api/urls${query}`, { headers, token: credential.token });
  if (answer.status !== 200) throw new Error(`GET /api/urls${query} answered ${answer.status}: ${answer.text}`);
  return answer.json;
}

/** Follows nextCursor to the end, running `between` after each page. */
async function listAll(
  credential: { key?: string; token?: string },
  limit: number,
  extra = '',
  between?: (page: number, listedSoFar: string[]) => Promise<void>,
): Promise<string[]> {
  const codes: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const query = `?limit=${limit}${extra}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const answer = await listPage(query, credential);
    expect(answer.items.length).toBeLessThanOrEqual(limit);
    codes.push(...answer.items.map((item) => item.code));
    if (!answer.nextCursor) return codes;
    cursor = answer.nextCursor;
    await between?.(page, codes);
  }
  throw new Error('the listing did not end');
}

describe('API keys (POST/GET/DELETE /api/keys)', () => {
  it("are the admin's: 401 without a token, 403 with another token, on every method", async () => {
    for (const [method, path] of [
      ['POST', '/api/keys'],
      ['GET', '/api/keys'],
      ['DELETE', '/api/keys/AAAAAAAAAA'],
    ]) {
      const body = method === 'POST' ? { name: 'x' } : undefined;
      expectProblem(await gw.call(path, { method, body }), 401);
      expectProblem(await gw.call(path, { method, body, token: 'not-the-admin-token' }), 403);
    }
  });

  it("are issued once with exactly the contract's fields, listed without secrets, and only a hash is stored", async () => {
    const issued = await issueKey({ name: 'billing', rateLimitPerMinute: 120 });
    expect(Object.keys(issued).sort()).toEqual(KEY_FIELDS);
    expect(issued).toMatchObject({ name: 'billing', rateLimitPerMinute: 120 });
    expect(issued.key).toMatch(new RegExp(`^shk_${issued.id}_[A-Za-z0-9_-]{43}$`));
    const defaulted = await issueKey();
    expect(defaulted.rateLimitPerMinute).toBe(600);

    const listed = await gw.get<Record<string, unknown>[]>('/api/keys', { token: stack.adminToken });
    expect(listed.status).toBe(200);
    const mine = listed.json.find((key) => key.id === issued.id);
    expect(mine).toEqual({ id: issued.id, name: 'billing', rateLimitPerMinute: 120, createdAt: issued.createdAt });
    expect(listed.text).not.toContain(issued.key.slice(15));

    // On every node (primaries and replicas): the row is there once, with the SHA-256 of the secret and nothing else of it.
    const secret = issued.key.slice(`shk_${issued.id}_`.length);
    const found = await Promise.all(
      allNodes(stack).map((node) =>
        withNode(
          stack,
          node,
          async (db) => (await db.query('SELECT secret_hash, row_to_json(api_keys)::text AS whole FROM api_keys WHERE id = $1', [issued.id])).rows,
        ),
      ),
    );
    const rows = found.flat();
    expect(rows.length).toBeGreaterThanOrEqual(1);
    for (const row of rows) {
      expect(Buffer.from(row.secret_hash).equals(createHash('sha256').update(secret).digest())).toBe(true);
      expect(row.whole).not.toContain(secret);
    }
  });

  it('refuses a bad body with 400 problem+json', async () => {
    for (const body of [
      {},
      { name: '' },
      { name: 'x'.repeat(201) },
      { name: 7 },
      { name: 'x', rateLimitPerMinute: 0 },
      { name: 'x', rateLimitPerMinute: 100_001 },
      { name: 'x', rateLimitPerMinute: 1.5 },
      { name: 'x', extra: 1 },
      { name: 'a\u0000b' },
    ]) {
      const answer = await gw.call('/api/keys', { method: 'POST', body, token: stack.adminToken });
      expect({ body, status: answer.status }).toEqual({ body, status: 400 });
      expectProblem(answer, 400);
    }
  });

  it('revoked: 401 within 5 s, and gone from the list; revoking again or an unknown id is a 404', async () => {
    const issued = await issueKey();
    await createWith(issued.key); // the gateway has it cached now
    const revokedAt = Date.now();
    expect((await gw.call(`/api/keys/${issued.id}`, { method: 'DELETE', token: stack.adminToken })).status).toBe(204);
    await eventually(
      async () => {
        const answer = await gw.create({ url: uniqueTarget() }, { 'x-api-key': issued.key });
        if (answer.status !== 401) throw new Error(`still ${answer.status}`);
        expectProblem(answer, 401);
      },
      { timeoutMs: 5000, intervalMs: 100 },
    );
    expect(Date.now() - revokedAt).toBeLessThan(5000);
    const listed = await gw.get<{ id: string }[]>('/api/keys', { token: stack.adminToken });
    expect(listed.json.map((key) => key.id)).not.toContain(issued.id);
    expectProblem(await gw.call(`/api/keys/${issued.id}`, { method: 'DELETE', token: stack.adminToken }), 404);
    expectProblem(await gw.call('/api/keys/nope', { method: 'DELETE', token: stack.adminToken }), 404);
  });

  it('presented wrongly are a 401 and create nothing', async () => {
    const issued = await issueKey();
    const wrongSecret = `${issued.key.slice(0, -2)}${issued.key.endsWith('AA') ? 'BB' : 'AA'}`;
    for (const headers of [
      { 'x-api-key': wrongSecret },
      { 'x-api-key': 'shk_garbage' },
      { authorization: `Bearer shk_${'A'.repeat(10)}_${'B'.repeat(43)}` },
      { 'x-api-key': '' },
    ] as Record<string, string>[]) {
      expectProblem(await gw.create({ url: uniqueTarget() }, headers), 401);
    }
  });
});

describe('links owned by a key', () => {
  it('may be changed and deleted by their key (either header), their manage token and the admin, and by no other key (403)', async () => {
    const owner = await issueKey();
    const stranger = await issueKey();
    const link = await createWith(owner.key, {}, 'bearer');
    const asKey = (key: string, method: string, body?: unknown) => gw.call(`/api/urls/${link.code}`, { method, body, headers: { 'x-api-key': key } });

    expectProblem(await asKey(stranger.key, 'PATCH', { url: 'https://example.org/stolen' }), 403);
    expectProblem(await asKey(stranger.key, 'DELETE'), 403);
    expect((await gw.details(link.code)).json.url).toBe(link.url);

    const byKey = await gw.call(`/api/urls/${link.code}`, { method: 'PATCH', body: { url: 'https://example.org/by-key' }, token: owner.key });
    expect(byKey.status).toBe(200);
    expect((await gw.patch(link.code, { url: 'https://example.org/by-token' }, link.manageToken)).status).toBe(200);
    expect((await gw.patch(link.code, { url: 'https://example.org/by-admin' }, stack.adminToken)).status).toBe(200);
    expect((await asKey(owner.key, 'DELETE')).status).toBe(204);
    expectProblem(await gw.redirect(link.code), 410);
  });

  it('cannot be taken over: a key may not change an anonymous link', async () => {
    const key = await issueKey();
    const anonymous = await gw.create({ url: uniqueTarget() });
    expect(anonymous.status).toBe(201);
    expectProblem(
      await gw.call(`/api/urls/${anonymous.json.code}`, { method: 'PATCH', body: { url: 'https://example.org/x' }, headers: { 'x-api-key': key.key } }),
      403,
    );
  });

  it("are created within the key's own quota: 429 with Retry-After and the rate-limit headers once it is spent", async () => {
    const key = await issueKey({ rateLimitPerMinute: 3 });
    for (let i = 0; i < 3; i++) {
      const answer = await gw.create({ url: uniqueTarget() }, { 'x-api-key': key.key });
      expect(answer.status).toBe(201);
      expect(answer.headers.get('ratelimit-policy')).toBe('"key";q=3;w=60');
    }
    const over = await gw.create({ url: uniqueTarget() }, { 'x-api-key': key.key });
    expectProblem(over, 429);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(over.headers.get('ratelimit')).toMatch(/^"key";r=0;t=\d+$/);
    // Another key is not held back by it.
    expect((await gw.create({ url: uniqueTarget() }, { 'x-api-key': (await issueKey()).key })).status).toBe(201);
  });

  it("and an Idempotency-Key replayed by another key is refused, not answered with the first key's manage token", async () => {
    const first = await issueKey();
    const second = await issueKey();
    const body = { url: uniqueTarget('idem') };
    const idempotencyKey = `e2e-keys-${Date.now()}`;
    const original = await gw.create(body, { 'x-api-key': first.key, 'idempotency-key': idempotencyKey });
    expect(original.status).toBe(201);
    const replay = await gw.create(body, { 'x-api-key': second.key, 'idempotency-key': idempotencyKey });
    expectProblem(replay, 422);
    expect(replay.text).not.toContain(original.json.manageToken);
  });
});

describe('GET /api/urls', () => {
  it("lists a key's links newest first, merged from every shard, in pages whose cursors hold while links come and go", async () => {
    const key = await issueKey();
    const created: CreatedLink[] = [];
    for (let i = 0; i < 30; i++) created.push(await createWith(key.key));
    // They are spread over the shards, and each row names its key as the owner.
    const holders = new Set<number>();
    for (const [shardIndex, shard] of stack.inventory.shards.entries()) {
      const rows = await withNode(
        stack,
        // Whichever node is primary now (an earlier suite or fault may have moved it from n0).
        await currentPrimary(stack, shard.id),
        async (db) =>
          (await db.query<{ code: string; owner: string }>('SELECT code, owner FROM urls WHERE code = ANY($1::text[])', [created.map((link) => link.code)]))
            .rows,
      );
      if (rows.length) holders.add(shardIndex);
      for (const row of rows) expect(row.owner).toBe(key.id);
    }
    expect(holders.size).toBeGreaterThan(1);

    const first = await listPage('?limit=7', { key: key.key });
    expect(first.items).toHaveLength(7);
    for (const item of first.items) expect(Object.keys(item).sort()).toEqual(DETAILS_KEYS);
    const newestFirst = [...created].reverse().map((link) => link.code);
    expect(first.items.map((item) => item.code)).toEqual(newestFirst.slice(0, 7));

    // Between pages: new links (newer than every cursor: never listed by this walk) and deletes.
    const deleted = new Set<string>();
    const deletedBeforeListed = new Set<string>();
    const added: string[] = [];
    const walked = await listAll({ key: key.key }, 7, '', async (page, listedSoFar) => {
      added.push((await createWith(key.key)).code);
      const victim = newestFirst[10 + page * 5];
      if (!victim) return;
      expect((await gw.remove(victim, key.key)).status).toBe(204);
      deleted.add(victim);
      if (!listedSoFar.includes(victim)) deletedBeforeListed.add(victim);
    });
    expect(new Set(walked).size).toBe(walked.length);
    expect(deletedBeforeListed.size).toBeGreaterThan(0);
    // Newer than every cursor of the walk: never listed by it. Deleted before their page: not listed either.
    expect(walked.filter((code) => added.includes(code) || deletedBeforeListed.has(code))).toEqual([]);
    // Every link that lived through the walk is listed, in order; a deleted one only if its page came before its delete.
    const survivors = newestFirst.filter((code) => !deleted.has(code));
    expect(walked.filter((code) => !added.includes(code) && !deleted.has(code))).toEqual(survivors);

    // And a fresh walk sees exactly the live links, newest first.
    const now = await listAll({ key: key.key }, 100);
    expect(now).toEqual([...added].reverse().concat(survivors));
  });

  it("shows the admin everyone's links or one key's, and a key only its own", async () => {
    const mine = await issueKey();
    const theirs = await issueKey();
    const a = await createWith(mine.key);
    const b = await createWith(theirs.key);
    expect(await listAll({ key: mine.key }, 100)).toEqual([a.code]);
    expect(await listAll({ token: stack.adminToken }, 100, `&key=${theirs.id}`)).toEqual([b.code]);
    const everyone = await listPage('?limit=100', { token: stack.adminToken });
    expect(everyone.items.map((item) => item.code).slice(0, 2)).toEqual(expect.arrayContaining([b.code]));
    expectProblem(await gw.get(`/api/urls?key=${theirs.id}`, { headers: { 'x-api-key': mine.key } }), 403);
  });

  it('refuses what it cannot answer: 401 without a credential, 403 with a manage token, 400 for a bad limit or cursor', async () => {
    const key = await issueKey();
    const link = await createWith(key.key);
    expectProblem(await gw.get('/api/urls'), 401);
    expectProblem(await gw.get('/api/urls', { token: link.manageToken }), 403);
    for (const query of ['?limit=0', '?limit=101', '?limit=abc', '?limit=1&limit=2', '?cursor=%%%', '?cursor=eyJ2IjoxfQ', '?key=short']) {
      expectProblem(await gw.get(`/api/urls${query}`, { token: stack.adminToken }), 400);
    }
    // A cursor from one key's listing is not valid in another's.
    await createWith(key.key);
    const page = await listPage('?limit=1', { key: key.key });
    expect(page.nextCursor).not.toBeNull();
    expectProblem(await request(stack.baseUrl, `/api/urls?cursor=${page.nextCursor}`, { token: stack.adminToken }), 400);
  });
});
