/**
 * Container faults of docs/reference.md sections 5 and 10 against the compose topology, each
 * under a steady create and redirect load (tools/docker/test.mjs runs this last, after the
 * API suite, on the same topology):
 *   - `docker kill` of a primary;
 *   - `docker pause` of a primary, `docker unpause` after 20 s;
 *   - `docker network disconnect` of a primary from the compose network (a real
 *     partition), `docker network connect` after 20 s;
 *   - `docker kill` of Redis and of a reader container.
 * Every acknowledged create is looked up on its shard's primary afterwards.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as CRC32 from 'crc-32';
import { composeAddress, containerOf, dockerCli, type ComposeTarget } from './support/docker';
import { currentPrimary, eventually, stackFromEnv, withNode, type StackHandle } from './support/stack';

jest.setTimeout(300_000);

const stack: StackHandle = stackFromEnv();
const base = stack.baseUrl;
const admin = { authorization: `Bearer ${stack.adminToken}` };
const measured: Record<string, unknown> = {};
const target = stack.inventory.compose as ComposeTarget;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface ClusterDoc {
  epoch: number;
  replicationMode: string;
  ring: { slots: number[] };
  shards: { id: number; primary: { name: string; healthy: boolean }; replicas: { name: string; healthy: boolean }[] }[];
  failovers: { shard: number; from: string; to: string; durationMs: number; reason: string }[];
}

async function cluster(): Promise<ClusterDoc> {
  const response = await fetch(`${base}/api/cluster`, { headers: admin, signal: AbortSignal.timeout(5000) });
  expect(response.status).toBe(200);
  return (await response.json()) as ClusterDoc;
}

let aliasCounter = 0;
/** An alias that lands on the given shard, so that a load aims at one shard. */
function aliasOn(doc: ClusterDoc, shard: number): string {
  for (;;) {
    const alias = `d${process.pid}x${Date.now().toString(36)}x${aliasCounter++}`;
    if (doc.ring.slots[(CRC32.str(alias) >>> 0) >>> 22] === shard) return alias;
  }
}

function nodeByName(name: string) {
  const node = stack.inventory.shards.flatMap((shard) => shard.nodes).find((candidate) => candidate.name === name);
  if (!node) throw new Error(`unknown node ${name}`);
  return node;
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
    { creators = 3, redirectors = 2 } = {},
  ) {
    for (let i = 0; i < creators; i++) this.workers.push(this.createLoop());
    for (let i = 0; i < redirectors; i++) this.workers.push(this.redirectLoop(i));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }

  firstAckSentAfter(time: number) {
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
          body: JSON.stringify({ url: `https://example.com/docker-fault/${alias}`, alias }),
          signal: AbortSignal.timeout(10_000),
        });
        await response.arrayBuffer();
        if (response.status === 201) this.acknowledged.push({ code: alias, sentAt, at: Date.now() });
        else {
          this.createFailures.push({ status: response.status, at: Date.now() });
          await sleep(100);
        }
      } catch {
        this.createFailures.push({ status: 0, at: Date.now() });
      }
    }
  }

  private async redirectLoop(offset: number): Promise<void> {
    let index = offset;
    while (this.running) {
      const code = this.existing[index++ % this.existing.length];
      try {
        const response = await fetch(`${base}/${code}`, { redirect: 'manual', signal: AbortSignal.timeout(5000) });
        await response.arrayBuffer();
        if (response.status === 302) this.redirects++;
        else this.redirectFailures.push({ code, status: response.status, at: Date.now() });
      } catch {
        this.redirectFailures.push({ code, status: 0, at: Date.now() });
      }
      await sleep(20);
    }
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

/** The acknowledged creates that are not on the shard's current primary. */
async function missingOnPrimary(shard: number, codes: string[]): Promise<string[]> {
  return eventually(
    async () => {
      const primary = nodeByName((await cluster()).shards[shard].primary.name);
      expect(await currentPrimary(stack, shard)).toEqual(primary);
      return withNode(stack, primary, async (db) => {
        const { rows } = await db.query<{ code: string }>('SELECT code FROM urls WHERE code = ANY($1)', [codes]);
        const found = new Set(rows.map((row) => row.code));
        return codes.filter((code) => !found.has(code));
      });
    },
    { timeoutMs: 30_000, intervalMs: 500 },
  );
}

/** Every other node of the shard is in recovery and streams from the primary the topology names. */
async function expectAllStreaming(shard: number, timeoutMs = 120_000): Promise<number> {
  const t0 = Date.now();
  await eventually(
    async () => {
      const members = (await cluster()).shards[shard];
      const streaming = await withNode(stack, nodeByName(members.primary.name), async (db) => {
        const { rows } = await db.query<{ application_name: string; state: string }>('SELECT application_name, state FROM pg_stat_replication');
        return rows.filter((row) => row.state === 'streaming').map((row) => row.application_name);
      });
      for (const replica of members.replicas) {
        if (!streaming.includes(replica.name)) throw new Error(`${replica.name} is not streaming from ${members.primary.name}`);
        const inRecovery = await withNode(
          stack,
          nodeByName(replica.name),
          async (db) => (await db.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r,
        );
        if (!inRecovery) throw new Error(`${replica.name} is not in recovery`);
      }
      return true;
    },
    { timeoutMs, intervalMs: 1000 },
  );
  return Date.now() - t0;
}

interface FaultRun {
  load: Load;
  /** How long the docker command of the fault took (the clock of the figures starts when it returned). */
  faultCommandMs: number;
  promotedAfterMs: number;
  recoveryMs: number;
  before: ClusterDoc;
  after: ClusterDoc;
  oldPrimary: string;
}

/** Load on `shard`, the fault on its primary, then: the new primary and the first create acknowledged after the fault. */
async function failoverUnderLoad(shard: number, fault: (primary: string) => Promise<void>, afterPromotion?: () => Promise<void>): Promise<FaultRun> {
  const before = await cluster();
  const existing = await seedLinks(before, shard, 10);
  const load = new Load(before, shard, existing);
  await sleep(1500);
  const oldPrimary = before.shards[shard].primary.name;
  const commandAt = Date.now();
  try {
    await fault(oldPrimary);
  } catch (error) {
    await load.stop(); // not left running into the next case
    throw error;
  }
  // Taken once the docker command returned (the fault is in place then), so that promotion and
  // first-acknowledgement times do not include the CLI's own latency.
  const faultAt = Date.now();
  const after = await eventually(
    async () => {
      const doc = await cluster();
      if (doc.epoch <= before.epoch || doc.shards[shard].primary.name === oldPrimary) throw new Error('no new primary yet');
      return doc;
    },
    { timeoutMs: 40_000, intervalMs: 200 },
  );
  const promotedAfterMs = Date.now() - faultAt;
  const firstAck = await eventually(
    async () => {
      const ack = load.firstAckSentAfter(faultAt);
      if (!ack) throw new Error('no create sent after the fault was acknowledged yet');
      return ack;
    },
    { timeoutMs: 30_000 },
  );
  if (afterPromotion) await afterPromotion();
  await sleep(1500);
  await load.stop();
  return { load, faultCommandMs: faultAt - commandAt, promotedAfterMs, recoveryMs: firstAck.at - faultAt, before, after, oldPrimary };
}

function summary(run: FaultRun, lost: string[]) {
  return {
    replicationMode: run.after.replicationMode,
    oldPrimary: run.oldPrimary,
    newPrimary: run.after.shards.find((shard) => shard.primary.name !== run.before.shards[shard.id].primary.name)?.primary.name,
    faultCommandMs: run.faultCommandMs,
    promotedAfterMs: run.promotedAfterMs,
    firstAckAfterMs: run.recoveryMs,
    acknowledged: run.load.acknowledged.length,
    lost: lost.length,
    rejectedCreates: run.load.createFailures.length,
    redirects: run.load.redirects,
    failedRedirects: run.load.redirectFailures.length,
  };
}

/**
 * Creates refused during a failover: 503 + Retry-After while the shard has no primary, or 504
 * for a create whose COMMIT was in flight when the primary went away (outcome unknown, safe
 * to retry with its Idempotency-Key), as in the local fault suite. Anything else is wrong.
 */
function unexpectedCreateFailures(run: FaultRun) {
  return run.load.createFailures.filter((failure) => failure.status !== 503 && failure.status !== 504);
}

/**
 * `docker pause`, retried a few times when runc reports "unable to freeze": on a loaded machine
 * the cgroup freezer can time out while the node's processes sit in uninterruptible I/O (seen
 * once here, load average above 20); runc thaws the container again then, so nothing is paused.
 */
async function pauseContainer(container: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await dockerCli(target, ['pause', container]);
      return;
    } catch (error) {
      if (attempt >= 5 || !/unable to freeze/.test((error as Error).message)) throw error;
      await sleep(250);
    }
  }
}

/** A write straight on a node's own socket (inside its container), given `seconds` to be acknowledged. */
async function writeInside(container: string, code: string, seconds: number): Promise<{ acknowledged: boolean; output: string }> {
  const sql = `INSERT INTO urls (code, url, manage_token_hash) VALUES ('${code}', 'https://example.com/isolated', '\\x00')`;
  try {
    const output = await dockerCli(
      target,
      ['exec', container, 'timeout', String(seconds), 'psql', '-U', 'postgres', '-d', 'shortener', '-XtAc', sql],
      (seconds + 15) * 1000,
    );
    return { acknowledged: /INSERT 0 1/.test(output), output };
  } catch (error) {
    return { acknowledged: false, output: String((error as { stdout?: string }).stdout ?? (error as Error).message) };
  }
}

describe('container faults (docker)', () => {
  afterAll(() => {
    // eslint-disable-next-line no-console
    console.log(`docker fault measurements: ${JSON.stringify(measured)}`);
    writeFileSync(join(stack.stackDir, 'docker-fault-measurements.json'), JSON.stringify(measured, null, 2));
  });

  const services = [
    ['gateway', 3000],
    ['writer', 4101],
    ['reader-0', 4201],
    ['reader-1', 4201],
    ['failover-monitor-0', 4300],
    ['failover-monitor-1', 4300],
  ] as const;

  it.each(services)('%s answers /health/live, /health/ready and /metrics in its container (port %i)', async (service, port) => {
    const url = `http://${await composeAddress(target, service)}:${port}`;
    expect((await fetch(`${url}/health/live`)).status).toBe(200);
    await eventually(async () => (await fetch(`${url}/health/ready`)).status === 200, { timeoutMs: 15_000, intervalMs: 500 });
    const metrics = await fetch(`${url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^# TYPE \S+ (counter|gauge|histogram|summary|untyped)$/m);
    const health = await dockerCli(target, ['inspect', '--format', '{{.State.Health.Status}}', await containerOf(target, service)]);
    expect(health.trim()).toBe('healthy');
  });

  it('docker kill of a primary: a replica is promoted within 10 s, no acknowledged create is lost, redirects never fail, it rejoins as a replica', async () => {
    const killed = await containerOf(target, (await cluster()).shards[1].primary.name);
    const run = await failoverUnderLoad(
      1,
      async () => void (await dockerCli(target, ['kill', killed])),
      // Started again as an orchestrator would (docker kill counts as a manual stop, which the
      // restart policy leaves alone); its entrypoint rewinds it into a replica.
      async () => void (await dockerCli(target, ['start', killed])),
    );
    const lost = await missingOnPrimary(
      1,
      run.load.acknowledged.map((ack) => ack.code),
    );
    const rejoinedAfterMs = await expectAllStreaming(1);
    measured.dockerKillPrimary = { ...summary(run, lost), rejoinedAfterMs };
    expect(run.after.failovers.at(-1)).toMatchObject({ shard: 1, from: run.oldPrimary });
    expect(run.promotedAfterMs).toBeLessThanOrEqual(10_000);
    expect(run.load.redirectFailures).toEqual([]);
    expect(unexpectedCreateFailures(run)).toEqual([]);
    if (run.after.replicationMode === 'quorum') expect(lost).toEqual([]);
    expect((await cluster()).shards[1].replicas.map((replica) => replica.name)).toContain(run.oldPrimary);
  });

  it('docker pause of a primary, unpause after 20 s: a replica is promoted within 10 s, nothing acknowledged is lost, the thawed node rejoins as a replica', async () => {
    const paused = await containerOf(target, (await cluster()).shards[2].primary.name);
    let pausedAt = 0;
    const run = await failoverUnderLoad(2, async () => {
      await pauseContainer(paused);
      pausedAt = Date.now();
    });
    await sleep(Math.max(0, pausedAt + 20_000 - Date.now()));
    await dockerCli(target, ['unpause', paused]);
    const lost = await missingOnPrimary(
      2,
      run.load.acknowledged.map((ack) => ack.code),
    );
    const rejoinedAfterMs = await expectAllStreaming(2);
    measured.dockerPausePrimary = { ...summary(run, lost), rejoinedAfterUnpauseMs: rejoinedAfterMs };
    expect(run.promotedAfterMs).toBeLessThanOrEqual(10_000);
    expect(run.load.redirectFailures).toEqual([]);
    expect(unexpectedCreateFailures(run)).toEqual([]);
    if (run.after.replicationMode === 'quorum') expect(lost).toEqual([]);
    await withNode(stack, nodeByName(run.oldPrimary), async (db) => {
      await expect(db.query("INSERT INTO urls (code, url, manage_token_hash) VALUES ('thawed-probe', 'https://x', '\\x00')")).rejects.toThrow(/read-only/);
    });
  });

  it('docker network disconnect of a primary: it acknowledges no write, a replica is promoted within 10 s, and after reconnecting it rejoins as a replica', async () => {
    const isolated = await containerOf(target, (await cluster()).shards[3].primary.name);
    let isolatedWrite: { acknowledged: boolean; output: string } | null = null;
    const probe = `isolated-${Date.now().toString(36)}`;
    const run = await failoverUnderLoad(
      3,
      async () => void (await dockerCli(target, ['network', 'disconnect', target.network, isolated])),
      async () => {
        // Straight on the cut-off primary, bypassing the services: quorum mode holds the commit (no standby reaches it).
        isolatedWrite = await writeInside(isolated, probe, 8);
      },
    );
    const oldPrimary = run.oldPrimary;
    await dockerCli(target, ['network', 'connect', '--alias', oldPrimary, target.network, isolated]);
    const lost = await missingOnPrimary(
      3,
      run.load.acknowledged.map((ack) => ack.code),
    );
    const rejoinedAfterMs = await expectAllStreaming(3);
    measured.dockerNetworkDisconnectPrimary = {
      ...summary(run, lost),
      isolatedWriteAcknowledged: isolatedWrite!.acknowledged,
      rejoinedAfterReconnectMs: rejoinedAfterMs,
    };
    expect(run.promotedAfterMs).toBeLessThanOrEqual(10_000);
    expect(run.load.redirectFailures).toEqual([]);
    expect(unexpectedCreateFailures(run)).toEqual([]);
    if (run.after.replicationMode === 'quorum') {
      expect(lost).toEqual([]);
      expect(isolatedWrite).toEqual(expect.objectContaining({ acknowledged: false }));
    }
    // The old primary is a standby of the new one now, and the write it held is nowhere.
    await withNode(stack, nodeByName(oldPrimary), async (db) => {
      expect((await db.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(true);
      await expect(db.query("INSERT INTO urls (code, url, manage_token_hash) VALUES ('reconnected-probe', 'https://x', '\\x00')")).rejects.toThrow(/read-only/);
    });
    for (const node of stack.inventory.shards[3].nodes) {
      const rows = await withNode(stack, node, async (db) => (await db.query('SELECT 1 FROM urls WHERE code = $1', [probe])).rowCount);
      expect({ node: node.name, rows }).toEqual({ node: node.name, rows: 0 });
    }
  });

  it.each(['redis-0', 'reader-0'])('docker kill of %s: redirects keep answering and creates keep working', async (service) => {
    const doc = await cluster();
    const existing = await seedLinks(doc, 0, 10);
    const load = new Load(doc, 0, existing, { creators: 1, redirectors: 3 });
    await sleep(1000);
    await dockerCli(target, ['kill', await containerOf(target, service)]);
    await sleep(8000);
    await load.stop();
    // Brought back as an orchestrator would (docker kill counts as a manual stop for the restart policy).
    await dockerCli(target, ['start', await containerOf(target, service)]);
    await eventually(
      async () => (await dockerCli(target, ['inspect', '--format', '{{.State.Running}}', await containerOf(target, service)])).trim() === 'true',
      {
        timeoutMs: 60_000,
        intervalMs: 1000,
      },
    );
    measured[`dockerKill_${service}`] = {
      redirects: load.redirects,
      failedRedirects: load.redirectFailures.length,
      acknowledged: load.acknowledged.length,
      failedCreates: load.createFailures.length,
    };
    expect(load.redirects).toBeGreaterThan(0);
    expect(load.redirectFailures).toEqual([]);
    expect(load.acknowledged.length).toBeGreaterThan(0);
  });
});
