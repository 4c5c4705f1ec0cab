/**
 * Online resharding on the real stack (docs/reference.md section 7): a shard is added and
 * then drained while creates, updates and redirects run and the cache is flushed now and
 * then; the leading monitor is killed in the middle of the drain. Runs after every other
 * suite (tools/test.mjs), since it changes the slot map for good.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OperationDocument } from '@shortener/resharding';
import { slotOf } from '@shortener/shard-router';
import { eventually, redisClient, stackFromEnv, withNode, type StackNode } from './support/stack';
import { gateway, sleep, uniqueAlias, type ClusterDocument, type LinkDetails } from './support/http';
import { isAlive, pidOf } from './support/faults';

jest.setTimeout(600_000);

const stack = stackFromEnv();
const api = gateway(stack);
const measured: Record<string, unknown> = {};

interface Seeded {
  code: string;
  manageToken: string;
  url: string;
  /** Successful redirects this suite made of it (each is one click). */
  clicks: number;
}

/** The i of an updated url `.../updated/<code>/<i>`; -1 for the seeded url (older than any update). */
function updateNumber(url: string | null): number {
  const match = url ? /\/updated\/[^/]+\/(\d+)$/.exec(url) : null;
  return match ? Number(match[1]) : url?.startsWith('https://example.com/reshard/seed/') ? -1 : -2;
}

async function cluster(): Promise<ClusterDocument> {
  const answer = await api.cluster();
  if (answer.status !== 200) throw new Error(`GET /api/cluster: ${answer.status}`);
  return answer.json;
}

/** Numbers every update of the suite, across loads, so a url's number says which update is newer. */
let updatesSent = 0;

/** Create, update and redirect load on the seeded links, checking every answer. */
class Load {
  running = true;
  readonly acknowledged: string[] = [];
  readonly createFailures: { status: number; retryAfter: string | null }[] = [];
  readonly updateFailures: { status: number; retryAfter: string | null }[] = [];
  readonly redirectFailures: { code: string; status: number; location: string | null; expected: string }[] = [];
  redirects = 0;
  updates = 0;
  private readonly loops: Promise<void>[];

  constructor(private readonly links: Seeded[]) {
    this.loops = [this.createLoop(), this.createLoop(), this.updateLoop(), this.redirectLoop(0), this.redirectLoop(1), this.flushLoop()];
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** What the load did, for the measurements printed after the suite. */
  counts() {
    return {
      acknowledged: this.acknowledged.length,
      createFailures: this.createFailures.length,
      updates: this.updates,
      updateFailures: this.updateFailures.length,
      redirects: this.redirects,
      redirectFailures: this.redirectFailures.length,
    };
  }

  private async createLoop(): Promise<void> {
    for (let i = 0; this.running; i++) {
      const alias = i % 2 ? uniqueAlias('rs') : undefined;
      const answer = await api.create({ url: `https://example.com/reshard/${i}`, ...(alias ? { alias } : {}) }).catch(() => null);
      if (answer?.status === 201) this.acknowledged.push(answer.json.code);
      else {
        this.createFailures.push({ status: answer?.status ?? 0, retryAfter: answer?.headers.get('retry-after') ?? null });
        await sleep(50);
      }
    }
  }

  /** Each update is acknowledged before the next redirect of that link is sent, so a redirect must never show an older url. */
  private async updateLoop(): Promise<void> {
    while (this.running) {
      const i = updatesSent++;
      const link = this.links[i % this.links.length];
      const url = `https://example.com/reshard/updated/${link.code}/${i}`;
      const answer = await api.patch(link.code, { url }, link.manageToken).catch(() => null);
      if (answer?.status === 200) {
        link.url = url;
        this.updates++;
      } else {
        this.updateFailures.push({ status: answer?.status ?? 0, retryAfter: answer?.headers.get('retry-after') ?? null });
        await sleep(50);
      }
    }
  }

  private async redirectLoop(offset: number): Promise<void> {
    for (let i = offset; this.running; i += 2) {
      const link = this.links[i % this.links.length];
      const expected = link.url;
      const answer = await api.redirect(link.code).catch(() => null);
      const location = answer?.headers.get('location') ?? null;
      if (answer?.status === 302) link.clicks++;
      // An update sent after this redirect may already show: only an older url than the last acknowledged one is stale.
      if (answer?.status !== 302 || updateNumber(location) < updateNumber(expected)) {
        this.redirectFailures.push({ code: link.code, status: answer?.status ?? 0, location, expected });
      }
      this.redirects++;
    }
  }

  private async flushLoop(): Promise<void> {
    const redis = redisClient(stack);
    try {
      while (this.running) {
        await sleep(3000);
        if (this.running) await redis.flushall().catch(() => undefined);
      }
    } finally {
      redis.disconnect();
    }
  }
}

/** POST or DELETE of a shard as a client does it: a 503 (no leading monitor answered in time) is tried again after its Retry-After. */
async function request(path: string, method: 'POST' | 'DELETE') {
  for (let attempt = 1; ; attempt++) {
    const answer = await api.call<OperationDocument>(path, { method, ...(method === 'POST' ? { body: {} } : {}), token: stack.adminToken, timeoutMs: 40_000 });
    if (answer.status !== 503 || attempt === 4) return answer;
    await sleep(Number(answer.headers.get('retry-after') ?? 5) * 1000);
  }
}

async function waitForOperation(id: string, onRunning?: (operation: OperationDocument) => Promise<void>): Promise<OperationDocument> {
  const deadline = Date.now() + 480_000;
  for (;;) {
    const answer = await api.get<OperationDocument>(`/api/cluster/operations/${id}`, { token: stack.adminToken });
    expect(answer.status).toBe(200);
    if (answer.json.state !== 'running') return answer.json;
    if (onRunning) await onRunning(answer.json);
    if (Date.now() > deadline) throw new Error(`operation ${id} still running: ${JSON.stringify(answer.json)}`);
    await sleep(250);
  }
}

/** Every code on every shard's primary: each lives on the shard the ring names, and on no other. */
async function placement(doc: ClusterDocument): Promise<{ misplaced: string[]; duplicated: string[]; codes: Map<string, number> }> {
  const codes = new Map<string, number>();
  const misplaced: string[] = [];
  const duplicated: string[] = [];
  for (const shard of doc.shards) {
    const node = { name: shard.primary.name, host: shard.primary.host, port: shard.primary.port, dataDir: '' } as StackNode;
    const rows = await withNode(stack, node, async (db) => (await db.query<{ code: string }>('SELECT code FROM urls')).rows);
    for (const { code } of rows) {
      if (codes.has(code)) duplicated.push(code);
      codes.set(code, shard.id);
      if (doc.ring.slots[slotOf(code)] !== shard.id) misplaced.push(`${code}@${shard.id}`);
    }
  }
  return { misplaced, duplicated, codes };
}

/** The monitor whose /metrics says it leads. */
async function leadingMonitor(): Promise<string> {
  for (const monitor of stack.inventory.services.monitors) {
    const text = await fetch(`http://127.0.0.1:${monitor.httpPort}/metrics`)
      .then((response) => response.text())
      .catch(() => '');
    if (/^shortener_monitor_leader(\{[^}]*\})? 1$/m.test(text)) return monitor.name;
  }
  throw new Error('no monitor leads');
}

describe('online resharding under load', () => {
  const links: Seeded[] = [];
  let added = -1;

  beforeAll(async () => {
    for (let i = 0; i < 300; i++) {
      const answer = await api.create({ url: `https://example.com/reshard/seed/${i}` });
      expect(answer.status).toBe(201);
      links.push({ code: answer.json.code, manageToken: answer.json.manageToken, url: answer.json.url, clicks: 0 });
    }
  });

  afterAll(() => {
    // eslint-disable-next-line no-console
    console.log(`resharding measurements: ${JSON.stringify(measured)}`);
  });

  it('adds a shard: only the handed-over slots move, every row ends on its owner only, nothing acknowledged is lost, redirects never fail or go stale', async () => {
    const before = await cluster();
    const load = new Load(links);
    await sleep(1500);
    const started = Date.now();
    const answer = await request('/api/cluster/shards', 'POST');
    expect(answer.status).toBe(202);
    expect(answer.headers.get('location')).toBe(`/api/cluster/operations/${answer.json.id}`);
    added = answer.json.shard;
    expect(added).toBe(Math.max(...before.shards.map((shard) => shard.id)) + 1);
    // One operation at a time.
    const second = await api.call('/api/cluster/shards', { method: 'POST', body: {}, token: stack.adminToken });
    expect(second.status).toBe(409);
    expect(await api.call('/api/cluster/shards', { method: 'POST', body: {} }).then((r) => r.status)).toBe(401);

    const done = await waitForOperation(answer.json.id);
    const tookMs = Date.now() - started;
    await sleep(1000);
    await load.stop();
    const after = await cluster();
    const { misplaced, duplicated, codes } = await placement(after);
    const movedSlots = after.ring.slots.filter((owner, slot) => owner !== before.ring.slots[slot]).length;
    measured.addShard = {
      shard: added,
      tookMs,
      operation: done,
      movedSlots,
      rowsCopied: done.rows.copied,
      rowsPerSecond: Math.round((done.rows.copied / tookMs) * 1000),
      ...load.counts(),
    };
    expect(done).toMatchObject({ state: 'done', type: 'add-shard' });
    expect(done.slots.moved).toBe(done.slots.total);
    expect(after.shards.map((shard) => shard.id)).toContain(added);
    // floor(1024 / (shards + 1)) slots, each taken from an old shard; no other slot changed owner.
    expect(after.ring.slots.filter((owner) => owner === added)).toHaveLength(Math.floor(1024 / (before.shards.length + 1)));
    expect(movedSlots).toBe(Math.floor(1024 / (before.shards.length + 1)));
    expect(misplaced).toEqual([]);
    expect(duplicated).toEqual([]);
    expect(load.acknowledged.filter((code) => !codes.has(code))).toEqual([]);
    expect(load.redirectFailures).toEqual([]);
    for (const failure of [...load.createFailures, ...load.updateFailures]) {
      expect(failure.status).toBe(503);
      expect(failure.retryAfter).not.toBeNull();
    }
    expect(done.maxWritePauseMs).toBeLessThan(2000);
  });

  it('drains the shard while the leading monitor is killed in the middle: the next leader finishes it, and click counts stay exact', async () => {
    expect(added).toBeGreaterThan(0);
    const before = await cluster();
    const load = new Load(links);
    await sleep(1000);
    const answer = await request(`/api/cluster/shards/${added}`, 'DELETE');
    expect(answer.status).toBe(202);
    let killed: string | null = null;
    const done = await waitForOperation(answer.json.id, async (operation) => {
      if (killed === null && operation.slots.moved > 0) {
        killed = await leadingMonitor();
        const pid = pidOf(stack, killed);
        if (pid !== null && isAlive(pid)) process.kill(pid, 'SIGKILL');
      }
    });
    await sleep(1000);
    await load.stop();
    const after = await cluster();
    const { misplaced, duplicated, codes } = await placement(after);
    measured.drainShard = {
      shard: added,
      killedMonitor: killed,
      operation: done,
      ...load.counts(),
    };
    expect(killed).not.toBeNull();
    expect(done).toMatchObject({ state: 'done', type: 'drain-shard' });
    expect(after.shards.map((shard) => shard.id)).not.toContain(added);
    expect(after.ring.slots).not.toContain(added);
    // Only the drained shard's slots moved.
    expect(after.ring.slots.filter((owner, slot) => owner !== before.ring.slots[slot] && before.ring.slots[slot] !== added)).toEqual([]);
    expect(misplaced).toEqual([]);
    expect(duplicated).toEqual([]);
    expect(load.acknowledged.filter((code) => !codes.has(code))).toEqual([]);
    expect(load.redirectFailures).toEqual([]);
    for (const failure of [...load.createFailures, ...load.updateFailures]) expect(failure.status).toBe(503);
    // Draining the last shard, or one that is not there, is refused.
    expect((await api.call(`/api/cluster/shards/${added}`, { method: 'DELETE', token: stack.adminToken })).status).toBe(404);

    // Every redirect this suite made is one click, counted once, wherever the link moved.
    await eventually(
      async () => {
        for (const link of links) {
          const details = await api.details(link.code);
          if ((details.json as LinkDetails).clicks !== link.clicks)
            throw new Error(`${link.code}: ${(details.json as LinkDetails).clicks} clicks, expected ${link.clicks}`);
        }
      },
      { timeoutMs: 90_000, intervalMs: 2000 },
    );
  });

  /**
   * Adds a shard under load and, once the first batch has switched, kills the primary of
   * `victim` (the shard whose primary dies: a source or the new shard) with SIGKILL; waits
   * for both the failover and the operation to end, and checks where every row lives.
   */
  async function addShardKillingPrimary(victimOf: (newShard: number) => number, label: string) {
    const before = await cluster();
    const load = new Load(links);
    await sleep(1000);
    const answer = await request('/api/cluster/shards', 'POST');
    expect(answer.status).toBe(202);
    const shard = answer.json.shard;
    const victim = victimOf(shard);
    let killed: string | null = null;
    const done = await waitForOperation(answer.json.id, async (operation) => {
      if (killed !== null || operation.slots.moved === 0) return;
      const primary = (await cluster()).shards.find((candidate) => candidate.id === victim)!.primary.name;
      // stack.json as it is now: it names the nodes the monitor provisioned for the new shard.
      const node = stackFromEnv()
        .inventory.shards.flatMap((candidate) => candidate.nodes)
        .find((candidate) => candidate.name === primary)!;
      const pid = Number(readFileSync(join(node.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGKILL');
      killed = primary;
    });
    // The failover and the move both done: a new primary on the victim's shard, every slot moved.
    const after = await eventually(
      async () => {
        const doc = await cluster();
        if (doc.shards.find((candidate) => candidate.id === victim)!.primary.name === killed) throw new Error(`no new primary on shard ${victim} yet`);
        return doc;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    await sleep(1000);
    await load.stop();
    const { misplaced, duplicated, codes } = await placement(after);
    measured[label] = {
      shard,
      killed,
      operation: done,
      ...load.counts(),
    };
    expect(killed).not.toBeNull();
    expect(done).toMatchObject({ state: 'done', type: 'add-shard' });
    expect(after.ring.slots.filter((owner) => owner === shard)).toHaveLength(Math.floor(1024 / (before.shards.length + 1)));
    expect(misplaced).toEqual([]);
    expect(duplicated).toEqual([]);
    // Quorum mode: every acknowledged create survived the failover and the move.
    if (after.replicationMode === 'quorum') expect(load.acknowledged.filter((code) => !codes.has(code))).toEqual([]);
    expect(load.redirectFailures).toEqual([]);
    for (const failure of [...load.createFailures, ...load.updateFailures]) expect([503, 504]).toContain(failure.status);
  }

  it('survives a failover of a source primary in the middle of a move: no row lost or duplicated, no slot with two owners', async () => {
    // Shard 0 gives slots to every new shard.
    await addShardKillingPrimary(() => 0, 'sourceFailover');
  });

  it('survives a failover of the target primary in the middle of a move: no row lost or duplicated, no slot with two owners', async () => {
    // The new shard is the only target of an added shard's batches; its primary was provisioned by the monitor.
    await addShardKillingPrimary((newShard) => newShard, 'targetFailover');
  });
});
