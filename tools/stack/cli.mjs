#!/usr/bin/env node
// npm run stack -- status         each node's role, port and replication state; Redis, Kafka, services
// npm run stack -- stop           stops the running launcher (or, without one, whatever of the stack is left)
// npm run stack -- psql <node>    psql on a node (database shortener) as postgres
// npm run stack -- env            the service environment (for running one service by hand)
// npm run stack -- provision-shard <id> [--json]   creates and starts shard <id>'s nodes (online resharding)
// npm run stack -- retire-shard <id> [--json]      stops shard <id>'s nodes, keeps their data, retires the shard
// npm run stack -- add-shard [--nodes '<json>']     adds a shard online (POST /api/cluster/shards), shows progress until it ends
// npm run stack -- drain-shard <id>                drains a shard online (DELETE /api/cluster/shards/<id>), likewise
// npm run stack -- backup [--type full|diff|incr]   pgBackRest backup of every shard (from a standby), then verify
// npm run stack -- backups        the backups of every shard
// npm run stack -- restore-point <name>             a named restore point on every shard at once
// npm run stack -- restore --to <time|restore point|latest> --stack-dir <new dir>
// STACK_DIR as for npm start (default .stack in the repository).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { REPO_ROOT, paths, readStackJson, rolePasswordFile } from './config.mjs';
import { canConnect, isAlive, processesOfStack, sleep } from './util.mjs';

const stackDir = resolve(REPO_ROOT, process.env.STACK_DIR || '.stack');
const p = paths(stackDir);
const [command = 'status', ...rest] = process.argv.slice(2);

function inventoryOrExit() {
  const inventory = readStackJson(stackDir);
  if (!inventory) {
    process.stderr.write(`no stack in ${stackDir} (no stack.json); start one with npm start\n`);
    process.exit(1);
  }
  return inventory;
}

function password() {
  return readFileSync(p.pgPassword, 'utf8').trim();
}

function pidOf(name) {
  const file = join(p.run, `${name}.pid`);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return isAlive(pid) ? pid : undefined;
}

async function nodeState(node, pw) {
  const pg = (await import('pg')).default;
  const client = new pg.Client({ host: node.host, port: node.port, user: 'postgres', password: pw, database: 'postgres', connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    const [{ standby }] = (await client.query('SELECT pg_is_in_recovery() AS standby')).rows;
    if (!standby) {
      const reps = (
        await client.query(
          'SELECT application_name, state, sync_state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag FROM pg_stat_replication ORDER BY application_name',
        )
      ).rows;
      const sync = (await client.query('SHOW synchronous_standby_names')).rows[0].synchronous_standby_names;
      return {
        role: 'primary',
        detail: `sync='${sync}' ${reps.map((r) => `${r.application_name}:${r.state}/${r.sync_state}/lag=${r.lag ?? '?'}B`).join(' ') || '(no replicas streaming)'}`,
      };
    }
    const wr = (await client.query('SELECT status, sender_port FROM pg_stat_wal_receiver')).rows[0];
    const lag = (await client.query('SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float AS s')).rows[0].s;
    return {
      role: 'replica',
      detail: wr ? `receiver ${wr.status} from port ${wr.sender_port}, last replay ${lag === null ? 'n/a' : `${lag.toFixed(1)} s ago`}` : 'no WAL receiver',
    };
  } catch (error) {
    return { role: 'down', detail: error.message };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function status() {
  const inventory = inventoryOrExit();
  const pw = password();
  const launcher = existsSync(p.launcherLock) ? Number(readFileSync(p.launcherLock, 'utf8').trim()) : undefined;
  console.log(
    `stack ${stackDir}  launcher: ${launcher && isAlive(launcher) ? `running (pid ${launcher})` : 'not running'}  mode: ${inventory.replicationMode}`,
  );
  for (const shard of inventory.shards) {
    console.log(`shard ${shard.id}${shard.provisioning ? '  (provisioning: npm run stack -- provision-shard ' + shard.id + ' completes it)' : ''}`);
    const states = await Promise.all(shard.nodes.map((node) => nodeState(node, pw)));
    shard.nodes.forEach((node, i) => console.log(`  ${node.name.padEnd(6)} ${String(node.port).padEnd(6)} ${states[i].role.padEnd(8)} ${states[i].detail}`));
  }
  for (const shard of inventory.retiredShards ?? [])
    console.log(`shard ${shard.id}  retired ${shard.retiredAt}  (stopped, data kept: ${shard.nodes.map((n) => n.name).join(' ')})`);
  console.log(`redis  ${inventory.redis.url}  ${(await canConnect(inventory.redis.host, inventory.redis.port)) ? 'up' : 'down'}`);
  const [kh, kp] = inventory.kafka.brokers[0].split(':');
  console.log(`kafka  ${inventory.kafka.brokers.join(',')}  ${(await canConnect(kh, Number(kp))) ? 'up' : 'down'}`);
  const s = inventory.services;
  const services = [
    ['gateway', s.gateway.port],
    ['writer', s.writer.httpPort],
    ...s.readers.map((r) => [r.name, r.httpPort]),
    ...s.monitors.map((m) => [m.name, m.httpPort]),
  ];
  for (const [name, port] of services) {
    const pid = pidOf(name);
    let health = '';
    try {
      const response = await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(1500) });
      health = `ready=${response.status}`;
    } catch {
      health = 'no answer';
    }
    console.log(`${name.padEnd(10)} :${port}  ${pid ? `pid ${pid}` : 'not running'}  ${health}`);
  }
}

async function stop() {
  const launcher = existsSync(p.launcherLock) ? Number(readFileSync(p.launcherLock, 'utf8').trim()) : undefined;
  if (launcher && isAlive(launcher)) {
    console.log(`stopping launcher ${launcher}`);
    process.kill(launcher, 'SIGTERM');
    for (let i = 0; i < 360 && isAlive(launcher); i++) await sleep(500);
    if (isAlive(launcher)) {
      console.error('the launcher did not stop within 3 minutes');
      process.exit(1);
    }
  }
  // whatever is left without a launcher: services, Redis, Kafka by pid; PostgreSQL by pg_ctl
  if (existsSync(p.run)) {
    for (const file of readdirSync(p.run).filter((f) => f.endsWith('.pid') && f !== 'launcher.pid')) {
      const pid = Number(readFileSync(join(p.run, file), 'utf8').trim());
      if (isAlive(pid)) {
        console.log(`stopping ${file.replace(/\.pid$/, '')} (pid ${pid})`);
        try {
          process.kill(-pid, 'SIGTERM');
        } catch {
          process.kill(pid, 'SIGTERM');
        }
      }
      rmSync(join(p.run, file), { force: true });
    }
  }
  const inventory = readStackJson(stackDir);
  if (inventory) {
    const { PgCluster } = await import('./pg.mjs');
    const cluster = new PgCluster(inventory, { pgBin: inventory.postgres.binDir, password: password(), replicationMode: inventory.replicationMode });
    await cluster.stopAll();
  }
  for (let i = 0; i < 60 && processesOfStack(stackDir).length > 0; i++) await sleep(500);
  const left = processesOfStack(stackDir);
  if (left.length > 0) {
    console.error(`still running: ${left.map((x) => `${x.pid} ${x.cmdline}`).join('; ')}`);
    process.exit(1);
  }
  console.log('stopped');
}

function psql(nodeName) {
  const inventory = inventoryOrExit();
  const node = inventory.shards.flatMap((s) => s.nodes).find((n) => n.name === nodeName);
  if (!node) {
    console.error(`unknown node "${nodeName}"; nodes: ${inventory.shards.flatMap((s) => s.nodes.map((n) => n.name)).join(' ')}`);
    process.exit(2);
  }
  const result = spawnSync(
    join(inventory.postgres.binDir, 'psql'),
    ['-h', node.host, '-p', String(node.port), '-U', 'postgres', '-d', rest[1] || 'shortener'],
    {
      stdio: 'inherit',
      env: { ...process.env, PGPASSWORD: password() },
    },
  );
  process.exit(result.status ?? 1);
}

function env() {
  const inventory = inventoryOrExit();
  const which = rest[0] || 'writer';
  const serviceEnv = inventory.services.env?.[which];
  if (!serviceEnv) {
    console.error(`unknown service "${which}"; one of: ${Object.keys(inventory.services.env ?? {}).join(' ')}`);
    process.exit(2);
  }
  const secretOf = (file) => (existsSync(file) ? readFileSync(file, 'utf8').trim() : '');
  const secrets = { PG_PASSWORD: password(), ADMIN_TOKEN: secretOf(p.adminToken), RPC_SECRET: secretOf(p.rpcSecret) };
  // PG_PASSWORD is the password of the service's own role (writer, reader-<i>, monitor-<i>; migrate: the superuser's)
  const role = which === 'migrate' ? undefined : which.replace(/-\d+$/, '');
  if (role && existsSync(rolePasswordFile(stackDir, role))) secrets.PG_PASSWORD = readFileSync(rolePasswordFile(stackDir, role), 'utf8').trim();
  for (const [k, v] of Object.entries(serviceEnv)) console.log(`${k}=${JSON.stringify(v === '(secret)' ? secrets[k] : v)}`);
}

/**
 * add-shard / drain-shard through the gateway's admin API, then the operation's progress
 * every 500 ms until it ends: 0 done, 1 failed (or lost from sight), 2 refused or misused.
 */
async function reshard() {
  const { UsageError, exitCodeOf, parseReshardingArgs, progressLine, progressOutput, refusalMessage } = await import('./operation-progress.mjs');
  let request;
  try {
    request = parseReshardingArgs(command, rest);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(error.message);
    return 2;
  }
  const inventory = inventoryOrExit();
  const token = existsSync(p.adminToken) ? readFileSync(p.adminToken, 'utf8').trim() : '';
  if (!token) {
    console.error(`no admin token in ${p.adminToken}`);
    return 1;
  }
  const base = `http://127.0.0.1:${inventory.services.gateway.port}`;
  const headers = { authorization: `Bearer ${token}` };
  let response;
  try {
    response = await fetch(`${base}${request.path}`, {
      method: request.method,
      headers: request.body ? { ...headers, 'content-type': 'application/json' } : headers,
      body: request.body ? JSON.stringify(request.body) : undefined,
      // The gateway waits up to 15 s for the leading monitor's answer.
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    console.error(`the gateway at ${base} did not answer: ${error.message}`);
    return 1;
  }
  const text = await response.text();
  if (response.status !== 202) {
    console.error(refusalMessage(response.status, text));
    return 2;
  }
  let document = JSON.parse(text);
  const location = response.headers.get('location') ?? `/api/cluster/operations/${document.id}`;
  const isTTY = Boolean(process.stdout.isTTY);
  let shown = null;
  let unseenSince = null;
  for (;;) {
    const line = progressLine(document);
    const output = progressOutput(line, shown, isTTY);
    if (output) process.stdout.write(output);
    shown = line;
    const code = exitCodeOf(document);
    if (code !== null) {
      if (isTTY) process.stdout.write('\n');
      if (code === 1) console.error(`${document.type} ${document.shard} failed: ${document.error ?? 'no error given'}`);
      return code;
    }
    await sleep(500);
    try {
      const poll = await fetch(`${base}${location}`, { headers, signal: AbortSignal.timeout(5000) });
      const body = await poll.text();
      if (poll.status !== 200) throw new Error(refusalMessage(poll.status, body));
      document = JSON.parse(body);
      unseenSince = null;
    } catch (error) {
      // The operation runs in the monitor: a gateway that restarts or is slow ends nothing.
      unseenSince ??= Date.now();
      if (Date.now() - unseenSince > 60_000) {
        if (isTTY) process.stdout.write('\n');
        console.error(`no progress of operation ${document.id} for a minute (${error.message}); it may still run: GET ${location}`);
        return 1;
      }
    }
  }
}

switch (command) {
  case 'status':
    await status();
    break;
  case 'stop':
    await stop();
    break;
  case 'psql':
    if (!rest[0]) {
      console.error('usage: npm run stack -- psql <node> [database]');
      process.exit(2);
    }
    psql(rest[0]);
    break;
  case 'env':
    env();
    break;
  case 'provision-shard': // online resharding: a shard's nodes (tools/stack/provision.mjs)
  case 'retire-shard':
    process.exitCode = await (await import('./provision.mjs')).shardNodesCommand(command, stackDir, rest);
    break;
  case 'add-shard':
  case 'drain-shard':
    process.exitCode = await reshard();
    break;
  case 'backup':
  case 'backups':
  case 'restore-point':
  case 'restore': {
    const { UsageError } = await import('./backup-plan.mjs');
    const commands = await import('./backup.mjs');
    const run = {
      backup: commands.backupCommand,
      backups: commands.backupsCommand,
      'restore-point': commands.restorePointCommand,
      restore: commands.restoreCommand,
    }[command];
    try {
      process.exitCode = await run(inventoryOrExit(), stackDir, rest);
    } catch (error) {
      console.error(error instanceof UsageError ? error.message : `${command} failed: ${error.message}`);
      process.exitCode = error instanceof UsageError ? 2 : 1;
    }
    break;
  }
  default:
    console.error(
      "usage: npm run stack -- status | stop | psql <node> [database] | env [service] | add-shard [--nodes '<json>'] | drain-shard <id> | backup [--type full|diff|incr] | backups | restore-point <name> | restore --to <time|restore point|latest> --stack-dir <dir>",
    );
    process.exit(2);
}
