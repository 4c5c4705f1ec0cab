/**
 * The fault suite of docs/reference.md section 5, on the real stack, under a steady create and
 * redirect load: a primary killed, a primary frozen and thawed, a replica killed, the
 * leading monitor killed, a planned switchover. It changes the topology, so
 * tools/test.mjs runs it after every other e2e spec, on the same stack.
 */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as CRC32 from 'crc-32';
import { currentPrimary, eventually, redisClient, stackFromEnv, withNode, type StackHandle } from './support/stack';

jest.setTimeout(240_000);

const stack: StackHandle = stackFromEnv();
const base = stack.baseUrl;
const admin = { authorization: `Bearer ${stack.adminToken}` };
const measured: Record<string, unknown> = {};

interface ClusterDoc {
  epoch: number;
  replicationMode: string;
  ring: { slots: number[] };
  shards: { id: number; primary: { name: string; healthy: boolean }; replicas: { name: string; healthy: boolean }[] }[];
  failovers: { shard: number; from: string; to: string; durationMs: number; reason: string }[];
}

async function cluster(): Promise<ClusterDoc> {
  const response = await fetch(`${base}/api/cluster`, { headers: admin });
  expect(response.status).toBe(200);
  return (await response.json()) as ClusterDoc;
}

function shardOf(doc: ClusterDoc, code: string): number {
  return doc.ring.slots[(CRC32.str(code) >>> 0) >>> 22];
}

let aliasCounter = 0;
/** An alias that lands on the given shard, so a load can aim at one shard. */
function aliasOn(doc: ClusterDoc, shard: number): string {
  for (;;) {
    const alias = `f${process.pid}x${Date.now().toString(36)}x${aliasCounter++}`;
    if (shardOf(doc, alias) === shard) return alias;
  }
}

function nodeByName(name: string) {
  const node = stack.inventory.shards.flatMap((shard) => shard.nodes).find((candidate) => candidate.name === name);
  if (!node) throw new Error(`unknown node ${name}`);
  return node;
}

function postmasterPid(name: string): number {
  return Number(readFileSync(join(nodeByName(name).dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/** The postmaster and its backends: what a frozen machine stops all at once. */
function processTree(root: number): number[] {
  const children = readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === root;
      } catch {
        return false;
      }
    })
    .map(Number);
  return [root, ...children];
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone already (fenced)
    }
  }
}

/** Creates on one shard and redirects of that shard's links, until stopped. */
class Load {
  readonly acknowledged: { code: string; sentAt: number; at: number }[] = [];
  readonly createFailures: { status: number; at: number }[] = [];
  readonly redirectFailures: { code: string; status: number; at: number }[] = [];
  redirects = 0;
  private running = true;
  private readonly workers: Promise<void>[] = [];

  constructor(
    private readonly doc: ClusterDoc,
    private readonly shard: number,
    private readonly existing: string[],
  ) {
    for (let i = 0; i < 3; i++) this.workers.push(this.createLoop());
    for (let i = 0; i < 2; i++) this.workers.push(this.redirectLoop(i));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }

  /** The first create acknowledged among those sent after `time`. */
  firstAckSentAfter(time: number): { code: string; sentAt: number; at: number } | null {
    return this.acknowledged.find((ack) => ack.sentAt > time) ?? null;
  }

  private async createLoop(): Promise<void> {
    while (this.running) {
      const alias = aliasOn(this.doc, this.shard);
      const sentAt = Date.now();
      try {
        const response = await fetch(`${base}/api/urls`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ url: `https://example.com/fault/${alias}`, alias }),
          signal: AbortSignal.timeout(10_000),
        });
        if (response.status === 201) this.acknowledged.push({ code: alias, sentAt, at: Date.now() });
        else {
          this.createFailures.push({ status: response.status, at: Date.now() });
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        await response.arrayBuffer();
      } catch {
        this.createFailures.push({ status: 0, at: Date.now() });
      }
    }
  }

  private async redirectLoop(offset: number): Promise<void> {
    let index = offset;
    // The link's cache entry is dropped before every redirect, so that each one goes
    // through a reader to the shard's nodes (otherwise the fault would only test Redis).
    const redis = redisClient(stack);
    redis.on('error', () => undefined);
    while (this.running) {
      const code = this.existing[index++ % this.existing.length];
      await redis.del(`u:${code}`).catch(() => undefined);
      try {
        const response = await fetch(`${base}/${code}`, { redirect: 'manual', signal: AbortSignal.timeout(5000) });
        await response.arrayBuffer();
        if (response.status === 302) this.redirects++;
        else this.redirectFailures.push({ code, status: response.status, at: Date.now() });
      } catch {
        this.redirectFailures.push({ code, status: 0, at: Date.now() });
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    redis.disconnect();
  }
}

async function seedLinks(doc: ClusterDoc, shard: number, count: number): Promise<string[]> {
  const codes: string[] = [];
  for (let i = 0; i < count; i++) {
    const alias = aliasOn(doc, shard);
    const response = await fetch(`${base}/api/urls`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: `https://example.com/seed/${alias}`, alias }),
    });
    expect(response.status).toBe(201);
    codes.push(alias);
  }
  return codes;
}

/** Every acknowledged create is on the shard's (new) primary. */
async function missingOnPrimary(shard: number, codes: string[]): Promise<string[]> {
  // The primary the topology names, checked to really be one (a node just promoted may
  // take a moment to accept connections).
  return eventually(
    async () => {
      const primary = nodeByName((await cluster()).shards[shard].primary.name);
      const standby = await withNode(stack, primary, async (db) => (await db.query('SELECT pg_is_in_recovery() AS r')).rows[0].r as boolean);
      if (standby) throw new Error(`${primary.name} is not a primary yet`);
      expect(await currentPrimary(stack, shard)).toEqual(primary);
      return withNode(stack, primary, async (db) => {
        const { rows } = await db.query<{ code: string }>('SELECT code FROM urls WHERE code = ANY($1)', [codes]);
        const found = new Set(rows.map((row) => row.code));
        return codes.filter((code) => !found.has(code));
      });
    },
    { timeoutMs: 20_000, intervalMs: 500 },
  );
}

/** Every other node of the shard streams from its primary again. */
async function expectAllStreaming(shard: number, timeoutMs = 90_000): Promise<void> {
  await eventually(
    async () => {
      const doc = await cluster();
      const members = doc.shards[shard];
      const primary = nodeByName(members.primary.name);
      const streaming = await withNode(stack, primary, async (db) => {
        const { rows } = await db.query<{ application_name: string; state: string }>('SELECT application_name, state FROM pg_stat_replication');
        return rows.filter((row) => row.state === 'streaming').map((row) => row.application_name);
      });
      for (const replica of members.replicas) {
        if (!streaming.includes(replica.name)) throw new Error(`${replica.name} is not streaming from ${members.primary.name}`);
        const inRecovery = await withNode(stack, nodeByName(replica.name), async (db) => {
          const { rows } = await db.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
          return rows[0].r;
        });
        if (!inRecovery) throw new Error(`${replica.name} is not in recovery`);
      }
      return true;
    },
    { timeoutMs, intervalMs: 1000 },
  );
}

async function monitorLeading(index: number): Promise<boolean> {
  const monitor = stack.inventory.services.monitors[index];
  const text = await fetch(`http://127.0.0.1:${monitor.httpPort}/metrics`)
    .then((response) => response.text())
    .catch(() => '');
  return /^shortener_monitor_leader\{[^}]*\} 1$/m.test(text);
}

async function failoverUnderLoad(
  shard: number,
  fault: (primary: string) => Promise<void>,
): Promise<{ load: Load; recoveryMs: number; before: ClusterDoc; after: ClusterDoc; oldPrimary: string }> {
  const before = await cluster();
  const existing = await seedLinks(before, shard, 10);
  const load = new Load(before, shard, existing);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const oldPrimary = before.shards[shard].primary.name;
  const faultAt = Date.now();
  await fault(oldPrimary);
  const after = await eventually(
    async () => {
      const doc = await cluster();
      if (doc.epoch <= before.epoch || doc.shards[shard].primary.name === oldPrimary) throw new Error('no new primary yet');
      return doc;
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  const firstAck = await eventually(
    async () => {
      const ack = load.firstAckSentAfter(faultAt);
      if (!ack) throw new Error('no create sent after the fault was acknowledged yet');
      return ack;
    },
    { timeoutMs: 30_000 },
  );
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await load.stop();
  return { load, recoveryMs: firstAck.at - faultAt, before, after, oldPrimary };
}

describe('faults (docs/reference.md section 5)', () => {
  afterAll(() => {
    // Numbers for the README: printed, and kept beside the stack's logs.
    // eslint-disable-next-line no-console
    console.log(`fault suite measurements: ${JSON.stringify(measured)}`);
    writeFileSync(join(stack.stackDir, 'fault-measurements.json'), JSON.stringify(measured, null, 2));
  });

  it('a killed primary: a replica is promoted within 10 s, no acknowledged create is lost, redirects never fail', async () => {
    const { load, recoveryMs, before, after, oldPrimary } = await failoverUnderLoad(1, async (primary) => {
      process.kill(postmasterPid(primary), 'SIGKILL');
    });
    const lost = await missingOnPrimary(
      1,
      load.acknowledged.map((ack) => ack.code),
    );
    measured.killPrimary = {
      replicationMode: after.replicationMode,
      recoveryMs,
      acknowledged: load.acknowledged.length,
      lost: lost.length,
      rejectedCreates: load.createFailures.length,
      redirects: load.redirects,
      failedRedirects: load.redirectFailures.length,
      failoverDurationMs: after.failovers.at(-1)?.durationMs,
    };
    expect(after.epoch).toBeGreaterThan(before.epoch);
    expect(after.failovers.at(-1)).toMatchObject({ shard: 1, from: oldPrimary, to: after.shards[1].primary.name });
    expect(recoveryMs).toBeLessThanOrEqual(10_000);
    expect(load.redirectFailures).toEqual([]);
    // 503: nothing was written (no writable primary); 504: the create was in flight when the primary died, so its
    // outcome is unknown (a retry with the same Idempotency-Key is safe). Nothing else.
    expect(load.createFailures.filter((failure) => failure.status !== 503 && failure.status !== 504)).toEqual([]);
    // In async mode a create acknowledged by the primary alone may die with it: counted above, not asserted.
    if (after.replicationMode === 'quorum') expect(lost).toEqual([]);
    await expectAllStreaming(1);
  });

  it('a frozen primary is replaced, fenced, and comes back as a replica that acknowledged nothing after the promotion', async () => {
    let frozen: number[] = [];
    const { load, recoveryMs, after, oldPrimary } = await failoverUnderLoad(2, async (primary) => {
      frozen = processTree(postmasterPid(primary));
      signalAll(frozen, 'SIGSTOP');
    });
    signalAll(frozen, 'SIGCONT');
    const lost = await missingOnPrimary(
      2,
      load.acknowledged.map((ack) => ack.code),
    );
    measured.freezePrimary = {
      replicationMode: after.replicationMode,
      recoveryMs,
      acknowledged: load.acknowledged.length,
      lost: lost.length,
      failedRedirects: load.redirectFailures.length,
    };
    expect(recoveryMs).toBeLessThanOrEqual(10_000);
    expect(load.redirectFailures).toEqual([]);
    if (after.replicationMode === 'quorum') expect(lost).toEqual([]);
    await expectAllStreaming(2);
    // The thawed node is a standby: a write on it fails.
    await withNode(stack, nodeByName(oldPrimary), async (db) => {
      await expect(db.query("INSERT INTO urls (code, url, manage_token_hash) VALUES ('fenced-probe', 'https://x', '\\x00')")).rejects.toThrow(/read-only/);
    });
    expect(after.shards[2].replicas.map((replica) => replica.name)).toContain(oldPrimary);
  });

  it('a killed replica leaves the read pool within 5 s, redirects keep working, and it comes back', async () => {
    const doc = await cluster();
    const shard = 3;
    const replica = doc.shards[shard].replicas[0].name;
    const existing = await seedLinks(doc, shard, 10);
    await stackRedisFlush();
    const load = new Load(doc, shard, existing);
    const killedAt = Date.now();
    process.kill(postmasterPid(replica), 'SIGKILL');
    // Out of the read pool of every reader (shortener_node_readable 0), not merely seen failing once.
    const leftAfter = await eventually(
      async () => {
        for (const reader of stack.inventory.services.readers) {
          const text = await fetch(`http://127.0.0.1:${reader.httpPort}/metrics`).then((response) => response.text());
          if (!new RegExp(`^shortener_node_readable\\{[^}]*node="${replica}"[^}]*\\} 0$`, 'm').test(text))
            throw new Error(`${replica} still in ${reader.name}'s read pool`);
        }
        return Date.now() - killedAt;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await load.stop();
    measured.killReplica = { leftReadPoolAfterMs: leftAfter, redirects: load.redirects, failedRedirects: load.redirectFailures.length };
    expect(leftAfter).toBeLessThanOrEqual(5_000);
    expect(load.redirectFailures).toEqual([]);
    await expectAllStreaming(shard);
  });

  it('the leading monitor dies: the other takes over and still fails over, once', async () => {
    const leaders = await Promise.all([0, 1].map(monitorLeading));
    expect(leaders.filter(Boolean)).toHaveLength(1);
    const leader = leaders.indexOf(true);
    const name = stack.inventory.services.monitors[leader].name;
    const hold = join(stack.stackDir, 'run', `${name}.hold`);
    writeFileSync(hold, '');
    const pid = Number(readFileSync(join(stack.stackDir, 'run', `${name}.pid`), 'utf8'));
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    try {
      const takeoverMs = await eventually(
        async () => {
          if (!(await monitorLeading(1 - leader))) throw new Error('no new leader yet');
          return Date.now() - killedAt;
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      );
      const { load, recoveryMs, before, after } = await failoverUnderLoad(0, async (primary) => {
        process.kill(postmasterPid(primary), 'SIGKILL');
      });
      const lost = await missingOnPrimary(
        0,
        load.acknowledged.map((ack) => ack.code),
      );
      measured.killLeader = { takeoverMs, recoveryMs, acknowledged: load.acknowledged.length, lost: lost.length };
      if (after.replicationMode === 'quorum') expect(lost).toEqual([]);
      expect(takeoverMs).toBeLessThanOrEqual(10_000);
      expect(after.failovers.filter((failover) => failover.shard === 0).length).toBe(before.failovers.filter((failover) => failover.shard === 0).length + 1);
      expect(after.epoch).toBe(before.epoch + 1);
      await expectAllStreaming(0);
    } finally {
      if (existsSync(hold)) rmSync(hold);
    }
  });

  it('a planned switchover hands over with no acknowledged create lost', async () => {
    const shard = 1;
    const before = await cluster();
    const existing = await seedLinks(before, shard, 10);
    const load = new Load(before, shard, existing);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const started = Date.now();
    const response = await fetch(`${base}/api/cluster/shards/${shard}/switchover`, { method: 'POST', headers: admin });
    const tookMs = Date.now() - started;
    expect(response.status).toBe(200);
    const after = (await response.json()) as ClusterDoc;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await load.stop();
    // The longest stretch without an acknowledged create on the shard around the hand-over.
    const times = load.acknowledged.map((ack) => ack.at).sort((a, b) => a - b);
    let longestPause = 0;
    for (let i = 1; i < times.length; i++) longestPause = Math.max(longestPause, times[i] - times[i - 1]);
    measured.switchover = { tookMs, longestWritePauseMs: longestPause, acknowledged: load.acknowledged.length };
    expect(after.epoch).toBeGreaterThan(before.epoch);
    expect(after.shards[shard].primary.name).not.toBe(before.shards[shard].primary.name);
    expect(load.redirectFailures).toEqual([]);
    expect(
      await missingOnPrimary(
        shard,
        load.acknowledged.map((ack) => ack.code),
      ),
    ).toEqual([]);
    expect(longestPause).toBeLessThanOrEqual(5_000);
    await expectAllStreaming(shard);
  });
});

async function stackRedisFlush(): Promise<void> {
  const { redisClient } = await import('./support/stack');
  const redis = redisClient(stack);
  try {
    await redis.flushall();
  } finally {
    redis.disconnect();
  }
}
