import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubernetesNodeControl } from './kubernetes-node-control';

/** A stand-in API server over real HTTP: answers pod reads and deletes from a table. */
function apiServer(pods: Record<string, { phase: string } | 'forbidden'>) {
  const seen: { method: string; url: string; authorization: string | undefined }[] = [];
  const patches: { pod: string; contentType: string | undefined; body: unknown }[] = [];
  const server = createServer(async (req: IncomingMessage, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const name = /\/pods\/([^?]+)/.exec(req.url ?? '')?.[1] ?? '';
    const pod = pods[name];
    if (pod === 'forbidden') return res.writeHead(403).end('{}');
    if (!pod) return res.writeHead(404).end('{}');
    if (req.method === 'DELETE') delete pods[name];
    if (req.method === 'PATCH') {
      patches.push({ pod: name, contentType: req.headers['content-type'], body: JSON.parse(Buffer.concat(chunks).toString()) });
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ metadata: { name }, status: pod }));
  });
  return { server, seen, patches };
}

describe('Kubernetes node control', () => {
  let dir: string;
  let server: Server;
  let seen: ReturnType<typeof apiServer>['seen'];
  let patches: ReturnType<typeof apiServer>['patches'];
  let control: KubernetesNodeControl;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sa-'));
    writeFileSync(join(dir, 'namespace'), 'shortener\n');
    writeFileSync(join(dir, 'token'), 'token-1\n');
    ({ server, seen, patches } = apiServer({ 'pg-s0-0': { phase: 'Running' }, 'pg-s0-1': { phase: 'Pending' }, 'pg-s0-2': 'forbidden' }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    control = new KubernetesNodeControl(
      [
        { name: 's0n0', host: 'pg-s0-0.pg-s0' },
        { name: 's0n1', host: 'pg-s0-1.pg-s0.shortener.svc.cluster.local' },
        { name: 's0n2', host: 'pg-s0-2.pg-s0' },
      ],
      { url: `http://127.0.0.1:${port}`, serviceAccountDir: dir, timeoutMs: 2000 },
    );
  });

  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('fences a node by a non-forced pod delete and returns only once the pod is gone', async () => {
    await control.fence('s0n0');
    expect(seen.map((call) => `${call.method} ${call.url}`)).toEqual([
      'GET /api/v1/namespaces/shortener/pods/pg-s0-0',
      'DELETE /api/v1/namespaces/shortener/pods/pg-s0-0?gracePeriodSeconds=1',
      'GET /api/v1/namespaces/shortener/pods/pg-s0-0',
    ]);
    expect(seen.every((call) => call.authorization === 'Bearer token-1')).toBe(true);
    expect(await control.isRunning('s0n0')).toBe(false);
  });

  it('a fence whose pod never goes away (its node is cut off) fails loudly', async () => {
    const stuck = apiServer({ 'pg-s0-0': { phase: 'Running' } });
    // Deletes are accepted but the kubelet never confirms: the pod stays.
    stuck.server.removeAllListeners('request');
    stuck.server.on('request', (req: IncomingMessage, res) => {
      req.resume();
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ metadata: { name: 'pg-s0-0', uid: 'u1' }, status: { phase: 'Running' } }));
    });
    await new Promise<void>((resolve) => stuck.server.listen(0, '127.0.0.1', resolve));
    const { port } = stuck.server.address() as AddressInfo;
    const slow = new KubernetesNodeControl([{ name: 's0n0', host: 'pg-s0-0.pg-s0' }], {
      url: `http://127.0.0.1:${port}`,
      serviceAccountDir: dir,
      timeoutMs: 1000,
      fenceTimeoutMs: 300,
      pollMs: 50,
    });
    try {
      await expect(slow.fence('s0n0')).rejects.toThrow(/not fenced/);
    } finally {
      await new Promise((resolve) => stuck.server.close(resolve));
    }
  });

  it('stops gracefully, and reads the token again on every call (it is rotated)', async () => {
    writeFileSync(join(dir, 'token'), 'token-2');
    await control.stop('s0n1');
    expect(seen.at(-1)).toEqual({
      method: 'DELETE',
      url: '/api/v1/namespaces/shortener/pods/pg-s0-1?gracePeriodSeconds=30',
      authorization: 'Bearer token-2',
    });
  });

  it('tells a running pod from a pending or missing one', async () => {
    expect(await control.isRunning('s0n0')).toBe(true);
    expect(await control.isRunning('s0n1')).toBe(false);
    await control.rejoin('s0n1', { name: 's0n0', host: 'pg-s0-0.pg-s0', port: 5432 });
    expect(await control.isRunning('s0n1')).toBe(false);
    // Deleting a pod that is already gone is what a delete wants.
    await expect(control.start('s0n1')).resolves.toBeUndefined();
  });

  it('labels each pod with its role, so the primary Service follows the topology', async () => {
    await control.markRoles([{ primary: 's0n1', replicas: ['s0n0'] }]);
    expect(patches).toEqual([
      { pod: 'pg-s0-1', contentType: 'application/merge-patch+json', body: { metadata: { labels: { 'shortener.io/role': 'primary' } } } },
      { pod: 'pg-s0-0', contentType: 'application/merge-patch+json', body: { metadata: { labels: { 'shortener.io/role': 'replica' } } } },
    ]);
    await expect(control.markRoles([{ primary: 's0n2', replicas: [] }])).rejects.toThrow(/HTTP 403/);
  });

  it('fails loudly when the API refuses, and knows only its own nodes', async () => {
    await expect(control.fence('s0n2')).rejects.toThrow(/HTTP 403/);
    await expect(control.isRunning('s0n2')).rejects.toThrow(/HTTP 403/);
    await expect(control.fence('s9n9')).rejects.toThrow(RangeError);
  });

  it('cannot provision a shard (the operator names the pods) and leaves retiring to the operator', async () => {
    expect(control.canProvision).toBe(false);
    await expect(control.provision()).rejects.toThrow('node control kubernetes cannot provision nodes: name them in the body of POST /api/cluster/shards');
    await expect(control.retire()).resolves.toBeUndefined();
    expect(seen).toEqual([]);
  });
});
