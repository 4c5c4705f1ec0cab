// Online resharding's node provisioning on the local stack (docs/reference.md section 7):
//   npm run stack -- provision-shard <id> [--json]   creates and starts shard <id>'s nodes
//   npm run stack -- retire-shard <id> [--json]      stops them and retires the shard
// The leading failover monitor runs both through its LocalNodeControl
// (apps/failover-monitor/src/local-node-control.ts) for POST/DELETE /api/cluster/shards.
//
// A new shard's nodes are made exactly as the launcher makes those of a new stack (pg.mjs:
// initdb with the stack's password and settings, pg_basebackup -R -C -S for the replicas,
// quorum once they stream; pgbackrest.mjs: archiving and the shard's stanza; the migrate
// CLI for the schema, the service roles and their passwords), started detached through
// pg_ctl, and recorded in stack.json's `shards`, which the launcher, `stack status`,
// SHARD_NODES and LocalNodeControl read. While that runs the shard carries
// `"provisioning": true`: running the command again completes what is missing; on a shard
// without the flag it only prints the shard (it never starts a node of a complete shard:
// the failover monitor may have stopped or fenced it on purpose).
//
// A retired shard moves from `shards` to `retiredShards` (with `retiredAt`): its data stays
// on disk, `npm start` no longer starts it, SHARD_NODES no longer names it, `stack status`
// lists it as retired, and its id is never used again.
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { HOST, REPO_ROOT, SERVICE_ROLES, paths, readStackJson, rolePasswordFile, shardNodesEnv } from './config.mjs';
import { isAlive, canConnect, setLogFile, waitFor } from './util.mjs';

/** Ports of a shard's nodes: PG_BASE_PORT + shard * PORT_STRIDE + index (docs/runtime.md). */
export const PORT_STRIDE = 8;

export class ProvisionError extends Error {}

export function nodeName(shard, index) {
  return `s${shard}n${index}`;
}

function allShards(inventory) {
  return [...(inventory.shards ?? []), ...(inventory.retiredShards ?? [])];
}

/** PG_BASE_PORT of a stack, from the first node that follows the naming scheme. */
export function pgBasePortOf(inventory) {
  for (const shard of allShards(inventory)) {
    for (const [index, node] of shard.nodes.entries()) {
      if (node.name === nodeName(shard.id, index)) return node.port - shard.id * PORT_STRIDE - index;
    }
  }
  throw new ProvisionError('stack.json has no node named s<shard>n<index> to derive PG_BASE_PORT from');
}

/** REPLICAS as the stack was started: the launcher takes it from the first shard, too. */
export function replicasOf(inventory) {
  const shard = inventory.shards?.[0] ?? inventory.retiredShards?.[0];
  if (!shard) throw new ProvisionError('stack.json has no shard');
  return shard.nodes.length - 1;
}

export function parseShardId(raw) {
  if (raw === undefined || !/^\d+$/.test(String(raw)))
    throw new ProvisionError(`shard id must be a non-negative integer; got ${raw === undefined ? 'nothing' : `"${raw}"`}`);
  return Number(raw);
}

/**
 * Shard `id` of the inventory as it is, or as it will be: nodes `s{id}n{i}`, i = 0..REPLICAS,
 * on ports PG_BASE_PORT + id*8 + i, data directories `pg/<node>`. Throws when the id was
 * retired or a port is out of range or taken by another node, Redis, Kafka or a service.
 */
export function plannedShard(inventory, id) {
  if ((inventory.retiredShards ?? []).some((shard) => shard.id === id)) {
    throw new ProvisionError(`shard ${id} was retired; shard ids are never reused`);
  }
  const pgDir = paths(inventory.stackDir).pg;
  const existing = inventory.shards.find((shard) => shard.id === id);
  if (existing) return { ...existing, nodes: existing.nodes.map((node) => ({ ...node, dataDir: join(pgDir, node.name) })) };
  const base = pgBasePortOf(inventory);
  const replicas = replicasOf(inventory);
  const nodes = Array.from({ length: 1 + replicas }, (_, index) => {
    const name = nodeName(id, index);
    return { name, host: HOST, port: base + id * PORT_STRIDE + index, dataDir: join(pgDir, name) };
  });
  const last = nodes[nodes.length - 1].port;
  if (last > 65535) throw new ProvisionError(`shard ${id} would need port ${last}, above 65535`);
  const taken = new Map();
  for (const shard of allShards(inventory)) for (const node of shard.nodes) taken.set(node.port, `node ${node.name}`);
  if (inventory.redis?.port) taken.set(inventory.redis.port, 'redis');
  for (const address of [...(inventory.kafka?.brokers ?? []), inventory.kafka?.controller].filter(Boolean)) {
    taken.set(Number(String(address).split(':').pop()), 'kafka');
  }
  const s = inventory.services;
  if (s) {
    taken.set(s.gateway?.port, 'gateway');
    taken.set(s.writer?.rpcPort, 'writer').set(s.writer?.httpPort, 'writer');
    for (const r of s.readers ?? []) taken.set(r.rpcPort, r.name).set(r.httpPort, r.name);
    for (const m of s.monitors ?? []) taken.set(m.httpPort, m.name);
  }
  for (const node of nodes) {
    if (taken.has(node.port)) throw new ProvisionError(`port ${node.port} of ${node.name} is already the stack's (${taken.get(node.port)})`);
  }
  return { id, nodes };
}

/** SHARD_NODES of every service environment recorded in stack.json, after a change of `shards`. */
function withServiceShardNodes(inventory) {
  const env = inventory.services?.env;
  if (!env) return inventory;
  const shardNodes = shardNodesEnv(inventory);
  const updated = Object.fromEntries(Object.entries(env).map(([name, vars]) => [name, 'SHARD_NODES' in vars ? { ...vars, SHARD_NODES: shardNodes } : vars]));
  return { ...inventory, services: { ...inventory.services, env: updated } };
}

/** The inventory with `shard` in `shards` (replaced or added, ordered by id); `provisioning` marks an unfinished one. */
export function withShard(inventory, shard, { provisioning }) {
  const entry = { id: shard.id, ...(provisioning ? { provisioning: true } : {}), nodes: shard.nodes.map((node) => ({ ...node })) };
  const shards = [...inventory.shards.filter((candidate) => candidate.id !== shard.id), entry].sort((a, b) => a.id - b.id);
  return withServiceShardNodes({ ...inventory, shards });
}

/** The inventory with shard `id` moved from `shards` to `retiredShards`. */
export function withRetiredShard(inventory, id, retiredAt = new Date().toISOString()) {
  const shard = inventory.shards.find((candidate) => candidate.id === id);
  if (!shard) {
    if ((inventory.retiredShards ?? []).some((candidate) => candidate.id === id)) return inventory;
    throw new ProvisionError(`no shard ${id} in the stack (shards: ${inventory.shards.map((s) => s.id).join(', ')})`);
  }
  if (inventory.shards.length === 1) throw new ProvisionError(`shard ${id} is the stack's last shard; it cannot be retired`);
  const retiredShards = [...(inventory.retiredShards ?? []), { id: shard.id, nodes: shard.nodes, retiredAt }].sort((a, b) => a.id - b.id);
  return withServiceShardNodes({ ...inventory, shards: inventory.shards.filter((candidate) => candidate.id !== id), retiredShards });
}

/**
 * The shards a running launcher must stop: those it started with and those added since
 * (stack.json), so that nodes provisioned while it ran stop with the stack.
 */
export function shardsToStop(started, current) {
  const byId = new Map(started.map((shard) => [shard.id, shard]));
  for (const shard of current?.shards ?? []) if (!byId.has(shard.id)) byId.set(shard.id, shard);
  return [...byId.values()];
}

/** The one-line answer of `--json`: the shard's nodes, the first its primary. */
export function shardSummary(shard) {
  return { id: shard.id, nodes: shard.nodes.map(({ name, host, port }) => ({ name, host, port })) };
}

function writeStackJson(stackDir, inventory) {
  const file = paths(stackDir).stackJson;
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(inventory, null, 2)}\n`);
  renameSync(tmp, file);
}

/** Re-reads stack.json and writes `change(inventory)`: the launcher or another command may have written it meanwhile. */
function updateStackJson(stackDir, change) {
  const inventory = readStackJson(stackDir);
  const next = change(inventory);
  writeStackJson(stackDir, next);
  return next;
}

/** One provision-shard or retire-shard at a time per stack. */
function acquireLock(stackDir) {
  const file = join(paths(stackDir).run, 'provision.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeFileSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (pid && pid !== process.pid && isAlive(pid)) throw new ProvisionError(`another provision-shard or retire-shard (pid ${pid}) is running on this stack`);
      rmSync(file, { force: true });
    }
  }
  throw new ProvisionError(`could not take ${file}`);
}

let progressLog;

/** One JSON line on stderr and in logs/provision.log. */
function progress(msg, fields = {}) {
  const line = `${JSON.stringify({ time: new Date().toISOString(), level: 'info', service: 'provision', msg, ...fields })}\n`;
  process.stderr.write(line);
  if (progressLog) appendFileSync(progressLog, line);
}

function readSecret(file) {
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
}

async function runMigrations(stackDir, shard, password) {
  const p = paths(stackDir);
  const cli = join(REPO_ROOT, 'dist', 'libs', 'db', 'src', 'migrate.cli.js');
  if (!existsSync(cli)) throw new ProvisionError(`cannot apply the migrations: ${cli} does not exist (run npm run build)`);
  const roles = Object.fromEntries(
    Object.keys(SERVICE_ROLES).map((service) => [`PG_${service.toUpperCase()}_PASSWORD`, readSecret(rolePasswordFile(stackDir, service))]),
  );
  const env = {
    ...process.env,
    // this shard alone: the others are migrated already (by the launcher or their own provisioning)
    SHARD_NODES: JSON.stringify([shardSummary(shard)]),
    PG_USER: 'postgres',
    PG_PASSWORD: password,
    PG_DATABASE: 'shortener',
    ...Object.fromEntries(Object.entries(roles).filter(([, value]) => value !== '')),
    SHORTENER_STACK_DIR: stackDir,
  };
  const out = openSync(join(p.logs, 'migrate.log'), 'a');
  const code = await new Promise((resolveRun) => {
    const child = spawn(process.execPath, [cli], { cwd: REPO_ROOT, stdio: ['ignore', out, out], env });
    child.on('exit', (c) => resolveRun(c ?? 1));
    child.on('error', () => resolveRun(1));
  });
  closeSync(out);
  if (code !== 0) throw new ProvisionError(`migrations of shard ${shard.id} failed (exit ${code}); see ${join(p.logs, 'migrate.log')}`);
}

/** Waits until every replica streams, then makes the primary's commits wait for ANY 1 of them (quorum mode). */
async function ensureQuorum(cluster, shard) {
  const [primary, ...replicas] = shard.nodes;
  if (cluster.replicationMode !== 'quorum' || replicas.length === 0) return;
  const [{ standby }] = await cluster.query(primary, 'SELECT pg_is_in_recovery() AS standby');
  if (standby) {
    progress('n0 is no primary (a failover happened): synchronous_standby_names left alone', { node: primary.name });
    return;
  }
  await waitFor(
    `replicas of shard ${shard.id} streaming`,
    async () => {
      const rows = await cluster.query(primary, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'");
      return rows[0].n >= replicas.length;
    },
    { timeoutMs: 60_000 },
  );
  const names = cluster.standbyNames(shard, primary);
  const [{ synchronous_standby_names: current }] = await cluster.query(primary, 'SHOW synchronous_standby_names');
  if (current === names) return;
  await cluster.query(primary, `ALTER SYSTEM SET synchronous_standby_names = '${names}'`);
  await cluster.query(primary, 'SELECT pg_reload_conf()');
  progress('quorum replication', { node: primary.name, synchronous_standby_names: names });
}

async function provision(stackDir, id) {
  const t0 = Date.now();
  const inventory = readStackJson(stackDir);
  const planned = plannedShard(inventory, id);
  const recorded = inventory.shards.find((shard) => shard.id === id);
  if (recorded && !recorded.provisioning) {
    progress('shard already provisioned', { shard: id });
    return planned;
  }
  const [{ PgCluster }, { PgBackRest }] = await Promise.all([import('./pg.mjs'), import('./pgbackrest.mjs')]);
  const password = readSecret(paths(stackDir).pgPassword);
  if (!password) throw new ProvisionError(`no ${paths(stackDir).pgPassword}`);
  const options = { pgBin: inventory.postgres.binDir, password, replicationMode: inventory.replicationMode };
  const single = new PgCluster({ ...inventory, shards: [planned] }, options);
  // Before anything is created: the ports must be free (or be these nodes', running).
  for (const node of planned.nodes) {
    if ((await single.status(node)) !== 'running' && (await canConnect(node.host, node.port, 1000))) {
      throw new ProvisionError(`port ${node.port} of ${node.name} is in use by another process`);
    }
  }
  const full = updateStackJson(stackDir, (current) => withShard(current, planned, { provisioning: true }));
  progress('provisioning shard', { shard: id, nodes: planned.nodes.map((n) => `${n.name}:${n.port}`) });

  single.prepareDirectories();
  // archive_command names the shard's stanza: pgbackrest.conf gets it before the primary starts
  if (full.archiving !== false) new PgBackRest(new PgCluster(full, options)).prepare();
  const complete = (node) => existsSync(join(node.dataDir, 'stack-initialized'));
  const [primary, ...replicas] = planned.nodes;
  for (const node of planned.nodes.filter(complete)) {
    single.writeConfig(node);
    await single.start(node);
  }
  if (!complete(primary)) {
    progress('initdb', { node: primary.name });
    await single.initPrimary(primary);
  }
  if (full.archiving !== false) {
    // Before the first base backup completes the primary's first WAL segment: an archive-push
    // that runs before its stanza exists leaves the async archiver failing for a minute.
    progress('pgbackrest stanza-create', { stanza: `shard-${id}` });
    await new PgBackRest(single).ensureStanzas();
  }
  for (const node of replicas) {
    if (complete(node)) continue;
    progress('pg_basebackup', { node: node.name, from: primary.name });
    await single.createReplica(node, primary, planned);
    await single.start(node);
  }
  await ensureQuorum(single, planned);
  await single.waitAllAccepting();
  progress('migrations', { shard: id });
  await runMigrations(stackDir, planned, password);
  updateStackJson(stackDir, (current) => withShard(current, planned, { provisioning: false }));
  progress('shard provisioned', { shard: id, seconds: (Date.now() - t0) / 1000 });
  return planned;
}

async function retire(stackDir, id) {
  const inventory = readStackJson(stackDir);
  const shard = [...inventory.shards, ...(inventory.retiredShards ?? [])].find((candidate) => candidate.id === id);
  if (!shard) throw new ProvisionError(`no shard ${id} in the stack (shards: ${inventory.shards.map((s) => s.id).join(', ')})`);
  withRetiredShard(inventory, id); // refuses the last shard before anything stops
  const { PgCluster } = await import('./pg.mjs');
  const pgDir = paths(stackDir).pg;
  const nodes = shard.nodes.map((node) => ({ ...node, dataDir: join(pgDir, node.name) }));
  const cluster = new PgCluster(
    { ...inventory, shards: [{ ...shard, nodes }] },
    {
      pgBin: inventory.postgres.binDir,
      password: readSecret(paths(stackDir).pgPassword),
      replicationMode: inventory.replicationMode,
    },
  );
  progress('stopping the shard', { shard: id, nodes: nodes.map((n) => n.name) });
  await Promise.all(nodes.map((node) => cluster.stop(node)));
  const left = [];
  for (const node of nodes) if ((await cluster.status(node)) === 'running') left.push(node.name);
  if (left.length > 0) throw new ProvisionError(`${left.join(', ')} did not stop; shard ${id} is not retired`);
  updateStackJson(stackDir, (current) => withRetiredShard(current, id));
  progress('shard retired', { shard: id });
  return shard;
}

/** `provision-shard <id> [--json]` and `retire-shard <id> [--json]` of tools/stack/cli.mjs; resolves the exit code. */
export async function shardNodesCommand(command, stackDir, args) {
  const json = args.includes('--json');
  const positional = args.filter((arg) => arg !== '--json');
  // stdout is the one JSON line; whatever else the stack's helpers print goes to stderr
  const stdoutWrite = process.stdout.write.bind(process.stdout);
  process.stdout.write = process.stderr.write.bind(process.stderr);
  const answer = (line) => {
    process.stdout.write = stdoutWrite;
    stdoutWrite(`${line}\n`);
  };
  let release;
  try {
    if (positional.length !== 1) throw new ProvisionError(`usage: npm run stack -- ${command} <id> [--json]`);
    const id = parseShardId(positional[0]);
    if (!readStackJson(stackDir)) throw new ProvisionError(`no stack in ${stackDir} (no stack.json); start one with npm start`);
    progressLog = join(paths(stackDir).logs, 'provision.log');
    setLogFile(progressLog); // pg.mjs's own lines
    release = acquireLock(stackDir);
    if (command === 'provision-shard') {
      const shard = await provision(stackDir, id);
      answer(
        json
          ? JSON.stringify(shardSummary(shard))
          : `shard ${shard.id}: ${shard.nodes.map((n) => `${n.name} ${n.host}:${n.port}`).join(', ')} (first: primary)`,
      );
    } else {
      const shard = await retire(stackDir, id);
      answer(
        json
          ? JSON.stringify({ ...shardSummary(shard), retired: true })
          : `shard ${shard.id} retired: ${shard.nodes.map((n) => n.name).join(', ')} stopped, data kept`,
      );
    }
    return 0;
  } catch (error) {
    process.stdout.write = stdoutWrite;
    process.stderr.write(`${command} failed: ${error.message}\n`);
    if (progressLog)
      appendFileSync(
        progressLog,
        `${JSON.stringify({ time: new Date().toISOString(), level: 'error', service: 'provision', msg: `${command} failed: ${error.message}` })}\n`,
      );
    return error instanceof ProvisionError && /^usage|must be/.test(error.message) ? 2 : 1;
  } finally {
    process.stdout.write = stdoutWrite;
    release?.();
  }
}
