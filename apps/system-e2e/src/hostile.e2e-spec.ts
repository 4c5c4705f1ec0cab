/**
 * A corpus of several hundred requests a hostile or broken client sends, against the real
 * stack through the gateway. Every one is answered: never a 5xx, never a hang; every
 * refusal is problem+json; whatever is accepted is stored normalised and served back
 * as a valid redirect. After the corpus, the stack's logs hold none of the secrets used
 * (locally the files under STACK_DIR; under compose, tools/docker/test.mjs, what `docker logs`
 * holds of every container of the project).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { stackFromEnv } from './support';
import { containerLogs, type ComposeTarget } from './support/docker';
import { expectProblem, gateway, request, uniqueTarget, type HttpAnswer } from './support/http';

const stack = stackFromEnv();
const gw = gateway(stack);
const gatewayUrl = new URL(stack.baseUrl);
const publicBase = stack.inventory.publicBaseUrl.replace(/\/+$/, '');

jest.setTimeout(300_000);

interface HostileRequest {
  name: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** The one status it must get; otherwise any 4xx, or a success where `accept` allows it. */
  status?: number;
  /** A success that is a right answer too (a normalised create, a read). */
  accept?: number[];
}

async function send(hostile: HostileRequest): Promise<HttpAnswer> {
  const response = await fetch(`${stack.baseUrl}${hostile.path}`, {
    method: hostile.method,
    headers: hostile.headers,
    body: hostile.body,
    redirect: 'manual',
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  let parsed: HttpAnswer['json'] = null;
  try {
    parsed = /json/.test(response.headers.get('content-type') ?? '') ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  return { status: response.status, headers: response.headers, json: parsed, text };
}

/** Sends over a raw socket what fetch refuses to send (bad request lines, raw bytes in the target). */
function sendRaw(bytes: Buffer): Promise<{ status: number; contentType: string; raw: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(gatewayUrl.port), gatewayUrl.hostname);
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const raw = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
      resolve({ status, contentType: /\r\ncontent-type: ([^\r]+)/i.exec(raw)?.[1] ?? '', raw });
    });
    socket.write(bytes);
    socket.end();
  });
}

const json = (value: unknown) => JSON.stringify(value);
const jsonHeaders = { 'content-type': 'application/json' };
const create = (name: string, body: string | Buffer, extra: Partial<HostileRequest> = {}): HostileRequest => {
  const { headers, ...rest } = extra;
  return { name, method: 'POST', path: '/api/urls', body, ...rest, headers: { ...jsonHeaders, ...(headers ?? {}) } };
};
/** A body the 16 KiB limit turns away before it is read is a 413; under it, a 400. */
const refusedBody = (body: string) => (Buffer.byteLength(body) > 16 * 1024 ? 413 : 400);

function corpus(): HostileRequest[] {
  const cases: HostileRequest[] = [];
  const target = uniqueTarget('hostile');

  // Wrong types and shapes of every field.
  const wrongValues: unknown[] = [null, true, 0, -1, 1e308, [], [target], {}, { href: target }, '', ' '];
  for (const field of ['url', 'alias', 'expiresAt', 'redirectType']) {
    for (const value of wrongValues) {
      const body = field === 'url' ? { url: value } : { url: target, [field]: value };
      cases.push(create(`${field} = ${JSON.stringify(value)}`, json(body), { status: 400 }));
    }
  }
  for (const body of ['null', 'true', '0', '"x"', '[]', '[{}]', '', ' ', '{', '{"url":', '{"url": "a" "b"}', '\u0000', '{"url": NaN}', "{'url': 'x'}"]) {
    cases.push(create(`body ${JSON.stringify(body)}`, body, { status: 400 }));
  }

  // Prototype-pollution and Object.prototype names as fields (unknown fields are a 400).
  for (const key of [
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'valueOf',
    'hasOwnProperty',
    'isPrototypeOf',
    '__defineGetter__',
    '__lookupSetter__',
  ]) {
    cases.push(create(`field ${key}`, `{"url": ${JSON.stringify(target)}, ${JSON.stringify(key)}: {"polluted": true}}`, { status: 400 }));
    cases.push(create(`nested ${key}`, `{"url": ${JSON.stringify(target)}, "alias": {${JSON.stringify(key)}: 1}}`, { status: 400 }));
  }

  // Deep nesting well under the 16 KiB limit, and bodies over it.
  for (const depth of [50, 500, 3000, 7000]) {
    const arrays = `{"url": ${'['.repeat(depth)}${']'.repeat(depth)}}`;
    const objects = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
    cases.push(create(`arrays ${depth} deep`, arrays, { status: refusedBody(arrays) }));
    cases.push(create(`objects ${depth} deep`, objects, { status: refusedBody(objects) }));
  }
  cases.push(create('body over 16 KiB', json({ url: `https://example.com/${'a'.repeat(17_000)}` }), { status: 413 }));

  // Unicode: lone surrogates, invalid UTF-8, NUL, odd charsets.
  for (const escaped of ['\\ud800', '\\udfff', '\\ud800x', '\\u0000', '\\u001b[31m']) {
    cases.push(create(`url with ${escaped}`, `{"url": "https://example.com/${escaped}"}`, { status: 400 }));
    cases.push(create(`alias with ${escaped}`, `{"url": ${JSON.stringify(target)}, "alias": "ab${escaped}"}`, { status: 400 }));
  }
  for (const bytes of [[0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80]]) {
    const body = Buffer.concat([Buffer.from('{"url": "https://example.com/'), Buffer.from(bytes), Buffer.from('"}')]);
    cases.push(create(`invalid UTF-8 ${Buffer.from(bytes).toString('hex')}`, body, { status: 400 }));
  }
  for (const contentType of [
    'application/json; charset=latin1',
    'application/json; charset=utf-16',
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/xml',
    '',
    'application/json; charset="nonsense"',
    'application/jsonx',
  ]) {
    cases.push({
      name: `content-type ${contentType || '(empty)'}`,
      method: 'POST',
      path: '/api/urls',
      headers: contentType ? { 'content-type': contentType } : {},
      body: json({ url: target }),
      accept: [201],
    });
  }

  // Targets: never accepted, or accepted only in their WHATWG serialisation.
  const refusedTargets = [
    'http://localhost/abc',
    'http://LOCALHOST./abc',
    'http://foo.localhost/',
    'http://127.0.0.1/',
    `http://127.0.0.1:${gatewayUrl.port}/`,
    'http://127.1/',
    'http://0x7f000001/',
    'http://2130706433/',
    'http://0177.0.0.1/',
    'http://0.0.0.0/',
    'http://[::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://[::ffff:7f00:1]/',
    'http://10.0.0.1/',
    'http://192.168.1.1/',
    'http://172.16.0.1/',
    'http://169.254.169.254/latest/meta-data/',
    'http://[fd00::1]/',
    'http://[fe80::1]/',
    `${publicBase}/x`,
    `${publicBase.toUpperCase()}/x`,
    'https://example.com@evil.org/',
    'https://user:pass@example.org/',
    'javascript:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    'file:///etc/passwd',
    'ftp://example.org/',
    'mailto:a@example.org',
    'about:blank',
    '//example.org/',
    '/relative',
    'example.org',
    'http://',
    'https://exa mple.org/',
    'https://example.org/\r\nSet-Cookie: x=1',
    `https://${'a'.repeat(64)}.example.org/`,
    'https://example..org/',
    'http://[::1/',
    'http://%zz/',
  ];
  for (const url of refusedTargets) cases.push(create(`target ${url.slice(0, 60)}`, json({ url }), { status: 400 }));
  const normalisedTargets = [
    'https://example.org/€uro',
    'https://example.org/😀?q=😀#😀',
    'https://☃.net/',
    'https://BÜCHER.example/',
    'https://example.org/a b',
    'https://example.org/%zz',
    'http:/example.org/x',
    'http:example.org/x',
    'https:\\\\example.org\\path',
    'HTTPS://EXAMPLE.ORG:443/Case',
    'https://example.org./',
    'https://example.org/../../etc',
    'https://example.org/\u00a0',
  ];
  for (const url of normalisedTargets)
    cases.push(create(`normalised target ${url}`, json({ url: `${url}${url.includes('?') ? '&' : '?'}n=${Math.random()}` }), { accept: [201] }));

  // Aliases.
  for (const alias of [
    'ab',
    'a'.repeat(33),
    'api',
    'health',
    'metrics',
    'docs',
    'admin',
    'has space',
    'dot.dot',
    'slash/x',
    'ümlaut',
    '%41bc',
    '../etc',
    'abc\u200b',
  ]) {
    cases.push(create(`alias ${JSON.stringify(alias)}`, json({ url: target, alias }), { status: 400 }));
  }

  // Expiry: impossible, ambiguous or past instants.
  for (const expiresAt of [
    '2099-01-01T24:00:00Z',
    '2099-02-30T00:00:00Z',
    '2099-13-01T00:00:00Z',
    '2099-01-01T00:60:00Z',
    '2099-01-01T00:00:61Z',
    '2099-01-01',
    '2099-01-01T00:00:00',
    '+275760-09-13T00:00:00Z',
    '10000-01-01T00:00:00Z',
    '1970-01-01T00:00:00Z',
    'now',
    '1e12',
    '2099-01-01T00:00:00+25:00',
    '2099-01-01 00:00:00Z ',
  ]) {
    cases.push(create(`expiresAt ${expiresAt}`, json({ url: target, expiresAt }), { status: 400 }));
  }

  // Headers: idempotency keys, bearer tokens, API keys.
  for (const key of ['', ' ', 'x'.repeat(256), 'x'.repeat(5000), 'ünicode', 'a b', 'tab\there']) {
    cases.push(
      create(`Idempotency-Key ${JSON.stringify(key.slice(0, 20))} (${key.length})`, json({ url: uniqueTarget() }), {
        headers: { 'idempotency-key': key },
        status: 400,
      }),
    );
  }
  const bearerHeaders = [
    'Bearer',
    'Bearer ',
    'Bearer a b',
    'Basic YWRtaW46YWRtaW4=',
    'bearer',
    `Bearer ${'x'.repeat(8000)}`,
    'Token abc',
    'Bearer shk_',
    'Bearer shk_AAAAAAAAAA_short',
    'Bearer \u00ff',
  ];
  for (const authorization of bearerHeaders) {
    cases.push({
      name: `PATCH with ${authorization.slice(0, 30)}`,
      method: 'PATCH',
      path: '/api/urls/abc1234',
      headers: { ...jsonHeaders, authorization },
      body: json({ url: target }),
    });
    cases.push({ name: `DELETE with ${authorization.slice(0, 30)}`, method: 'DELETE', path: '/api/urls/abc1234', headers: { authorization } });
    cases.push({ name: `GET /api/keys with ${authorization.slice(0, 30)}`, method: 'GET', path: '/api/keys', headers: { authorization } });
    cases.push({ name: `GET /api/urls with ${authorization.slice(0, 30)}`, method: 'GET', path: '/api/urls', headers: { authorization } });
  }
  for (const apiKey of ['', 'x', `shk_${'A'.repeat(10)}_${'B'.repeat(43)}`, 'shk_AAAAAAAAAA_' + 'B'.repeat(5000), 'shk_../../etc_x']) {
    cases.push(create(`X-Api-Key ${apiKey.slice(0, 30)}`, json({ url: uniqueTarget() }), { headers: { 'x-api-key': apiKey }, status: 401 }));
  }
  cases.push({ name: 'a 40 KiB header', method: 'GET', path: '/api/cluster', headers: { 'x-filler': 'a'.repeat(40_000) }, status: 431 });

  // Paths that cannot be codes: a 404 without touching a database.
  for (const path of [
    `/${'a'.repeat(201)}`,
    `/${'a'.repeat(5000)}`,
    '/%ZZ',
    '/%',
    '/%C0%AF',
    '/%00',
    '/a%2Fb',
    '/..%2F..%2Fetc',
    '/ab',
    '/!!!!',
    '/%F0%9F%98%80',
    '/a.b',
    '/api/urls/%ZZ',
    `/api/urls/${'a'.repeat(300)}`,
    '/api/urls/..%2Fkeys',
  ]) {
    cases.push({ name: `path ${path.slice(0, 40)}`, method: 'GET', path, status: 404 });
  }
  const asAdmin = { authorization: `Bearer ${stack.adminToken}` };
  for (const query of ['?limit=-1', '?limit=1e2', '?limit=%00', `?cursor=${'A'.repeat(5000)}`, '?cursor=%FF', '?key=%00', '?limit=1&limit=1']) {
    cases.push({ name: `GET /api/urls${query.slice(0, 30)}`, method: 'GET', path: `/api/urls${query}`, headers: asAdmin, status: 400 });
  }
  // Parameters the API does not name are ignored, as HTTP APIs do (bracket syntax is not parsed into objects); an empty limit is the default.
  for (const query of ['?limit=', '?cursor[]=x', '?limit[$gt]=1', '?key[]=x', '?__proto__[admin]=1', '?constructor=1']) {
    cases.push({ name: `GET /api/urls${query}`, method: 'GET', path: `/api/urls${query}`, headers: asAdmin, accept: [200] });
  }

  // Every method on every route.
  const routes = [
    '/api/urls',
    '/api/urls/abc1234',
    '/api/keys',
    '/api/keys/AAAAAAAAAA',
    '/api/cluster',
    '/api/cluster/shards/0/switchover',
    '/api/cluster/events',
    '/abc1234',
    '/health/live',
    '/health/ready',
    '/metrics',
    '/docs',
    '/admin',
  ];
  for (const path of routes) {
    for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD']) {
      if (path === '/api/cluster/events' && method === 'GET') continue; // a stream: answered, never ends
      cases.push({
        name: `${method} ${path}`,
        method,
        path,
        headers: method === 'POST' || method === 'PUT' || method === 'PATCH' ? jsonHeaders : {},
        body: ['POST', 'PUT', 'PATCH'].includes(method) ? '{}' : undefined,
        accept: [200, 201, 202, 204, 301, 302, 307, 308],
      });
    }
  }
  return cases;
}

describe('a hostile client', () => {
  const cases = corpus();

  it(`is answered with a 4xx problem+json, or a right success, for each of ${cases.length} requests, and never a 5xx`, async () => {
    expect(cases.length).toBeGreaterThanOrEqual(300);
    const wrong: string[] = [];
    const accepted: { name: string; answer: HttpAnswer }[] = [];
    for (const hostile of cases) {
      const answer = await send(hostile);
      const contentType = answer.headers.get('content-type') ?? '';
      const status = answer.status;
      const refused = status >= 400 && status < 500;
      const problem = hostile.method === 'HEAD' || (contentType.startsWith('application/problem+json') && answer.json?.status === status);
      const rightStatus = hostile.status !== undefined ? status === hostile.status : refused || (hostile.accept ?? []).includes(status);
      if (!rightStatus || (refused && !problem) || status >= 500) wrong.push(`${hostile.name}: ${status} ${contentType} ${answer.text.slice(0, 160)}`);
      if (status === 201 && hostile.path === '/api/urls') accepted.push({ name: hostile.name, answer });
    }
    expect(wrong).toEqual([]);

    // What was accepted is stored in its WHATWG serialisation (ASCII: punycode host,
    // percent-encoded path) and redirects to exactly that.
    for (const { name, answer } of accepted) {
      const stored = answer.json.url as string;
      expect({ name, stored, ascii: /^[\x21-\x7e]+$/.test(stored), whatwg: new URL(stored).href }).toEqual({ name, stored, ascii: true, whatwg: stored });
      expect(new URL(stored).username).toBe('');
      const redirect = await gw.redirect(answer.json.code);
      expect({ name, status: redirect.status, location: redirect.headers.get('location') }).toEqual({ name, status: 302, location: stored });
    }
    expect(accepted.length).toBeGreaterThanOrEqual(10);
  });

  it.each([
    ['a malformed request line', 'GARBAGE\r\n\r\n', 400],
    ['conflicting lengths', 'POST /api/urls HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello', 400],
    ['raw non-ASCII in the target', Buffer.concat([Buffer.from('GET /\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'latin1')]), 400],
    ['a header without a colon', 'GET / HTTP/1.1\r\nHost: x\r\nnocolon\r\nConnection: close\r\n\r\n', 400],
  ])('gets a problem+json 4xx for %s, over a raw socket', async (_, bytes, status) => {
    const answer = await sendRaw(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'latin1'));
    expect({ status: answer.status, contentType: answer.contentType }).toEqual({ status, contentType: expect.stringMatching(/^application\/problem\+json/) });
  });

  it('still finds the stack healthy afterwards', async () => {
    expect((await gw.get('/health/ready')).status).toBe(200);
    const created = await gw.create({ url: uniqueTarget() });
    expect(created.status).toBe(201);
    expectProblem(await request(stack.baseUrl, '/api/urls', { method: 'POST', body: '{', headers: jsonHeaders }), 400);
  });
});

describe("the stack's logs", () => {
  /** Every log file of the local stack (services, PostgreSQL, Redis, Kafka). */
  function logFiles(directory: string, found: string[] = []): string[] {
    for (const name of readdirSync(directory)) {
      const path = join(directory, name);
      const info = statSync(path, { throwIfNoEntry: false });
      if (!info) continue;
      if (info.isDirectory()) {
        if (!/data|kafka-data|pgdata|e2e-output|node_modules/.test(name)) logFiles(path, found);
      } else if (/\.log$|\.jsonl?$/.test(name) && info.size < 200 * 1024 * 1024) found.push(path);
    }
    return found;
  }

  it('hold none of the secrets: the admin token, the database password, a manage token or an API key used here', async () => {
    const link = await gw.create({ url: uniqueTarget('secret') });
    const key = await gw.call<{ key: string }>('/api/keys', { method: 'POST', body: { name: 'log check' }, token: stack.adminToken });
    expect(key.status).toBe(201);
    // Used where a careless log line would catch them: a wrong-key answer, an update, a 403.
    await gw.create({ url: uniqueTarget() }, { 'x-api-key': key.json.key });
    await gw.patch(link.json.code, { url: uniqueTarget('secret2') }, link.json.manageToken);
    await gw.call(`/api/urls/${link.json.code}`, { method: 'DELETE', headers: { 'x-api-key': key.json.key } });
    await gw.get('/api/cluster', { token: stack.adminToken });
    await new Promise((resolve) => setTimeout(resolve, 1500)); // let the services flush their lines

    const secrets = {
      adminToken: stack.adminToken,
      pgPassword: stack.pgPassword,
      manageToken: link.json.manageToken,
      apiKey: key.json.key,
      apiKeySecret: key.json.key.slice(15),
    };
    // Locally: the log files under STACK_DIR. Under compose every part logs to its container's
    // stdout/stderr, and `docker logs` of each container of the project is read instead.
    const logs =
      stack.inventory.target === 'compose'
        ? await containerLogs(stack.inventory.compose as ComposeTarget)
        : logFiles(stack.stackDir).map((file) => ({ name: file, text: readFileSync(file, 'utf8') }));
    expect(logs.length).toBeGreaterThan(3);
    expect(logs.some((log) => log.text.length > 0)).toBe(true);
    const leaks: string[] = [];
    for (const { name: where, text } of logs) {
      for (const [name, secret] of Object.entries(secrets)) if (text.includes(secret)) leaks.push(`${name} in ${where}`);
    }
    expect(leaks).toEqual([]);
  });
});
