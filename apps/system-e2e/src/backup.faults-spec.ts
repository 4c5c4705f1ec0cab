/**
 * Backups and point-in-time recovery (docs/reference.md section 11) on the real stack:
 * links created in four sets around a full backup, a moment T, a restore point and a
 * failover of one shard's primary; then every shard restored into new STACK_DIRs and
 * started: to T (A and B, not C and D), to the restore point (A to C), to the end of
 * the archive (all four, also what the promoted replica archived after the failover).
 * It kills a primary, so tools/test.mjs runs it with the fault suite, after the others.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Client } from 'pg';
import { gateway, request, sleep, uniqueTarget } from './support/http';
import { currentPrimary, eventually, stackFromEnv, withNode, type StackHandle } from './support/stack';

jest.setTimeout(600_000);

const REPO = resolve(__dirname, '..', '..', '..');
const stack: StackHandle = stackFromEnv();
const api = gateway(stack);
const measured: Record<string, unknown> = {};
const offset = Number(process.env.E2E_PORT_OFFSET || 0);
/** The restored stacks' ports, clear of the stack under test. */
const RESTORED_PORTS = {
  PG_BASE_PORT: String(18400 + offset),
  REDIS_PORT: String(18379 + offset),
  KAFKA_PORT: String(21092 + offset),
  PORT: String(3400 + offset),
  SERVICES_BASE_PORT: String(6100 + offset),
};

function stackCli(args: string[], env: Record<string, string> = {}, { withoutPorts = false } = {}): { status: number; out: string } {
  const inherited = { ...process.env };
  if (withoutPorts) for (const name of Object.keys(RESTORED_PORTS)) delete inherited[name];
  const result = spawnSync(process.execPath, [join(REPO, 'tools', 'stack', 'cli.mjs'), ...args], {
    cwd: REPO,
    env: { ...inherited, STACK_DIR: stack.stackDir, ...env },
    encoding: 'utf8',
    timeout: 15 * 60_000,
  });
  return { status: result.status ?? 1, out: `${result.stdout}${result.stderr}` };
}

async function createSet(label: string, count = 12): Promise<string[]> {
  const codes: string[] = [];
  for (let i = 0; i < count; i++) {
    // A failover may be settling: 503 (no writable primary) is retried, as a client would.
    const created = await eventually(
      async () => {
        const answer = await api.create({ url: uniqueTarget(`backup-${label}`) });
        if (answer.status !== 201) throw new Error(`create answered ${answer.status}`);
        return answer.json;
      },
      { timeoutMs: 30_000, intervalMs: 300 },
    );
    codes.push(created.code);
  }
  return codes;
}

/** Until each shard's current primary has archived the segment holding its WAL as of now. */
async function waitArchived(): Promise<number> {
  const t0 = Date.now();
  await Promise.all(
    stack.inventory.shards.map(async (shard) => {
      const primary = await currentPrimary(stack, shard.id);
      const lsn = await withNode(stack, primary, async (db) => (await db.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn as string);
      await eventually(
        async () => {
          const archived = await withNode(
            stack,
            primary,
            async (db) =>
              (await db.query("SELECT coalesce(last_archived_wal, '') >= pg_walfile_name($1) AS done FROM pg_stat_archiver", [lsn])).rows[0].done as boolean,
          );
          if (!archived) throw new Error(`shard ${shard.id}: WAL at ${lsn} not archived yet`);
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
    }),
  );
  return Date.now() - t0;
}

interface Restored {
  stackDir: string;
  launcher?: ChildProcess;
  baseUrl: string;
  /** the launcher's last lines, stdout and stderr */
  output: string[];
}

/** `restore` into a new directory, on the restored stacks' ports, or (withoutPorts) on ports it chooses. */
function restore(to: string, name: string, { withoutPorts = false } = {}): Restored & { out: string; ms: number } {
  const stackDir = join(stack.stackDir, '..', `${name}-${process.pid}`);
  rmSync(stackDir, { recursive: true, force: true });
  const t0 = Date.now();
  const result = stackCli(['restore', '--to', to, '--stack-dir', stackDir], withoutPorts ? {} : RESTORED_PORTS, { withoutPorts });
  if (result.status !== 0) throw new Error(`restore --to ${to} failed (${result.status}):\n${result.out}`);
  return { stackDir, out: result.out, ms: Date.now() - t0, baseUrl: `http://127.0.0.1:${RESTORED_PORTS.PORT}`, output: [] };
}

/** The last lines of a restored stack's launcher output (its launcher.log holds the same) and service logs: its directory is removed at stop. */
function logTails(restored: Restored, files = ['gateway', 'reader-0', 'reader-1', 'writer', 'monitor-0', 'kafka']): string {
  const parts = [`--- launcher output ---\n${restored.output.slice(-40).join('\n')}`];
  for (const name of files) {
    const file = join(restored.stackDir, 'logs', `${name}.log`);
    if (existsSync(file)) parts.push(`--- ${name}.log ---\n${readFileSync(file, 'utf8').split('\n').slice(-25).join('\n')}`);
  }
  return parts.join('\n');
}

/** `npm start` on the restored STACK_DIR (the build of the stack under test is reused). */
async function start(restored: Restored, { services = true } = {}): Promise<number> {
  const t0 = Date.now();
  const launcher = spawn(process.execPath, [join(REPO, 'tools', 'start.mjs')], {
    cwd: REPO,
    env: { ...process.env, ...RESTORED_PORTS, STACK_DIR: restored.stackDir, STACK_SKIP_BUILD: '1', STACK_SKIP_SERVICES: services ? '0' : '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  restored.launcher = launcher;
  const keep = (line: string) => {
    restored.output.push(line);
    if (restored.output.length > 200) restored.output.shift();
  };
  createInterface({ input: launcher.stderr! }).on('line', keep);
  await new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`the restored stack was not ready within 5 minutes\n${logTails(restored)}`)), 5 * 60_000);
    createInterface({ input: launcher.stdout! }).on('line', (line) => {
      keep(line);
      if (line.startsWith('ready: ')) {
        clearTimeout(timer);
        resolveReady();
      }
    });
    launcher.once('exit', (code) => {
      clearTimeout(timer);
      // the output's last lines are read once the pipes are drained
      setTimeout(() => reject(new Error(`the restored stack's launcher exited with ${code}\n${logTails(restored)}`)), 200);
    });
  });
  return Date.now() - t0;
}

async function stop(restored: Restored): Promise<void> {
  if (restored.launcher && restored.launcher.exitCode === null) {
    const exited = new Promise((resolveExit) => restored.launcher!.once('exit', resolveExit));
    restored.launcher.kill('SIGTERM');
    await Promise.race([exited, sleep(120_000)]);
  }
  stackCli(['stop'], { STACK_DIR: restored.stackDir });
  rmSync(restored.stackDir, { recursive: true, force: true });
}

/** The codes that exist on the restored stack's primaries (n0 of each shard), asked directly. */
async function presentIn(restored: Restored, codes: string[]): Promise<Set<string>> {
  const inventory = JSON.parse(readFileSync(join(restored.stackDir, 'stack.json'), 'utf8')) as StackHandle['inventory'];
  const password = readFileSync(join(restored.stackDir, 'pg-password'), 'utf8').trim();
  const found = new Set<string>();
  for (const shard of inventory.shards) {
    const node = shard.nodes[0];
    const client = new Client({ host: node.host, port: node.port, user: 'postgres', password, database: 'shortener' });
    await client.connect();
    try {
      for (const row of (await client.query('SELECT code FROM urls WHERE code = ANY($1)', [codes])).rows) found.add(row.code as string);
    } finally {
      await client.end();
    }
  }
  return found;
}

/**
 * Each code's redirect status on a restored stack. A 503 (+ Retry-After) in its first seconds
 * after ready is "not yet" (CI of f4cad90: one of 40 codes, once), asked again for up to 30 s;
 * a 302 or 404 is the answer about what the restore brought back.
 */
async function redirects(restored: Restored, codes: string[]): Promise<Record<string, number>> {
  const statuses: Record<string, number> = {};
  const deadline = Date.now() + 30_000;
  for (const code of codes) {
    let status = (await request(restored.baseUrl, `/${code}`)).status;
    while (status === 503 && Date.now() < deadline) {
      await sleep(500);
      status = (await request(restored.baseUrl, `/${code}`)).status;
    }
    statuses[code] = status;
  }
  return statuses;
}

/**
 * Every code redirects with `status` on the restored stack. A failure names how many answered
 * what, and carries the restored stack's log tails: its directory is gone after the test.
 */
async function expectRedirects(restored: Restored, codes: string[], status: number): Promise<void> {
  const statuses = await redirects(restored, codes);
  const wrong = Object.entries(statuses).filter(([, answered]) => answered !== status);
  if (wrong.length === 0) return;
  const byStatus: Record<string, number> = {};
  for (const [, answered] of wrong) byStatus[answered] = (byStatus[answered] ?? 0) + 1;
  throw new Error(
    `${wrong.length} of ${codes.length} codes did not answer ${status}: ${JSON.stringify(byStatus)} (${wrong
      .slice(0, 6)
      .map(([code, answered]) => `${code} ${answered}`)
      .join(', ')})\n${logTails(restored)}`,
  );
}

describe('backups and point-in-time recovery (docs/reference.md section 11)', () => {
  const sets: Record<'A' | 'B' | 'C' | 'D', string[]> = { A: [], B: [], C: [], D: [] };
  let target = '';
  const restorePoint = `e2e-point-${process.pid}`;
  const restored: Restored[] = [];

  // A failed test's restored stack stops before the next one starts on the same ports.
  afterEach(async () => {
    for (let r = restored.pop(); r; r = restored.pop()) await stop(r).catch(() => undefined);
  });

  afterAll(() => {
    console.log(`backup suite measurements: ${JSON.stringify(measured)}`);
  });

  it('backs up every shard from a standby, verified, and lists the backups', async () => {
    sets.A = await createSet('A');
    const t0 = Date.now();
    const backup = stackCli(['backup', '--type', 'full']);
    measured.fullBackupMs = Date.now() - t0;
    expect(backup.out).toMatch(new RegExp(`${stack.inventory.shards.length} of ${stack.inventory.shards.length} shards backed up`));
    for (const shard of stack.inventory.shards)
      expect(backup.out).toMatch(new RegExp(`shard-${shard.id}: full backup from s${shard.id}n\\d \\(standby\\) .* verified`));
    expect(backup.status).toBe(0);
    const listed = stackCli(['backups']);
    expect(listed.status).toBe(0);
    for (const shard of stack.inventory.shards) expect(listed.out).toMatch(new RegExp(`^shard-${shard.id}\\s+\\d{8}-\\d{6}F\\s+full\\s`, 'm'));
  });

  it('refuses bad commands and targets with a clear message, before touching anything', () => {
    const dir = join(stack.stackDir, '..', `never-${process.pid}`);
    expect(stackCli(['backup', '--type', 'weekly'])).toMatchObject({ status: 2, out: expect.stringMatching(/--type must be full, diff or incr/) });
    expect(stackCli(['restore', '--to', '2020-01-01T00:00:00Z', '--stack-dir', dir], RESTORED_PORTS)).toMatchObject({
      status: 2,
      out: expect.stringMatching(/older than the oldest backup of shard-0/),
    });
    expect(stackCli(['restore', '--to', '2999-01-01T00:00:00Z', '--stack-dir', dir], RESTORED_PORTS)).toMatchObject({
      status: 2,
      out: expect.stringMatching(/in the future/),
    });
    expect(stackCli(['restore', '--to', 'no-such-point', '--stack-dir', dir], RESTORED_PORTS)).toMatchObject({
      status: 2,
      out: expect.stringMatching(/no restore point named "no-such-point"/),
    });
    expect(stackCli(['restore', '--to', 'latest', '--stack-dir', stack.stackDir])).toMatchObject({
      status: 2,
      out: expect.stringMatching(/must be a new directory/),
    });
    expect(existsSync(dir)).toBe(false);
  });

  it('keeps archiving across a failover: sets B, C (a restore point between) and D around it', async () => {
    sets.B = await createSet('B');
    await sleep(1500);
    target = new Date().toISOString();
    await sleep(1500);
    sets.C = await createSet('C');
    const point = stackCli(['restore-point', restorePoint]);
    expect(point).toMatchObject({ status: 0, out: expect.stringMatching(new RegExp(`restore point "${restorePoint}" at .* shard-0 [0-9A-F]+/[0-9A-F]+`)) });
    // It answers once archived: the kill below must not take the segment holding it along.
    expect(point.out).toMatch(new RegExp(`restore point "${restorePoint}" archived on every shard in [0-9.]+ s`));
    expect(stackCli(['restore-point', restorePoint])).toMatchObject({ status: 2, out: expect.stringMatching(/exists already/) });

    const before = await currentPrimary(stack, 0);
    const pid = Number(readFileSync(join(before.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGKILL');
    const after = await eventually(
      async () => {
        const now = await currentPrimary(stack, 0);
        if (now.name === before.name) throw new Error('not promoted yet');
        return now;
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    expect(after.name).not.toBe(before.name);
    sets.D = await createSet('D');
    measured.archiveWaitMs = await waitArchived();
  });

  it('restores to a time: A and B redirect on the restored stack, C and D do not', async () => {
    const r = restore(target, 'restore-time');
    restored.push(r);
    measured.restoreToTimeMs = r.ms;
    expect(r.out).toMatch(new RegExp(`restoring ${stack.inventory.shards.length} shards to ${target.replace(/\./g, '\\.')}`));
    measured.restoredStackStartMs = await start(r);
    await expectRedirects(r, [...sets.A, ...sets.B], 302);
    await expectRedirects(r, [...sets.C, ...sets.D], 404);
    // The restored stack is a whole one: it takes new links, and archives into its own repository.
    const created = await request<{ code: string }>(r.baseUrl, '/api/urls', { method: 'POST', body: { url: uniqueTarget('restored') } });
    expect(created.status).toBe(201);
    expect((await request(r.baseUrl, `/${created.json.code}`)).status).toBe(302);
    const info = JSON.parse(
      spawnSync('pgbackrest', [`--config=${join(r.stackDir, 'pgbackrest', 'pgbackrest.conf')}`, '--output=json', 'info'], { encoding: 'utf8', ...asPostgres() })
        .stdout,
    ) as { name: string; repo: { status: { code: number } }[] }[];
    expect(info.map((stanza) => stanza.name).sort()).toEqual(stack.inventory.shards.map((shard) => `shard-${shard.id}`).sort());
  });

  it('restores to a named restore point: A, B and C, not D (on ports it chose, moved by the first start)', async () => {
    const r = restore(restorePoint, 'restore-point', { withoutPorts: true });
    restored.push(r);
    const chosen = Number(/PostgreSQL from port (\d+)/.exec(r.out)?.[1]);
    const inUse = stack.inventory.shards.flatMap((shard) => shard.nodes.map((node) => node.port));
    expect(chosen).toBeGreaterThan(0);
    expect(inUse).not.toContain(chosen);
    await start(r, { services: false });
    const started = JSON.parse(readFileSync(join(r.stackDir, 'stack.json'), 'utf8')) as {
      shards: { nodes: { port: number }[] }[];
      restoredFrom: { to: string; startedAt?: string };
    };
    expect(started.shards[0].nodes[0].port).toBe(Number(RESTORED_PORTS.PG_BASE_PORT));
    expect(started.restoredFrom).toMatchObject({ to: restorePoint, startedAt: expect.any(String) });
    const present = await presentIn(r, [...sets.A, ...sets.B, ...sets.C, ...sets.D]);
    expect([...sets.A, ...sets.B, ...sets.C].filter((code) => !present.has(code))).toEqual([]);
    expect(sets.D.filter((code) => present.has(code))).toEqual([]);
  });

  it('restores to the end of the archive: all four sets, D from what the promoted replica archived', async () => {
    const r = restore('latest', 'restore-latest');
    restored.push(r);
    measured.restoreToLatestMs = r.ms;
    await start(r);
    const all = [...sets.A, ...sets.B, ...sets.C, ...sets.D];
    await expectRedirects(r, all, 302);
  });
});

/** pgbackrest reads the repository as the PostgreSQL OS user, who owns it. */
function asPostgres(): { uid?: number; gid?: number; env: NodeJS.ProcessEnv } {
  const user = stack.inventory.postgres.osUser;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0 || !user) return { env: process.env };
  const id = (flag: string) => Number(spawnSync('id', [flag, user], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g'), env: { ...process.env, HOME: '/tmp' } };
}
