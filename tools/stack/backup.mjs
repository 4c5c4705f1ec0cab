// npm run stack -- backup [--type full|diff|incr] | backups | restore-point <name> |
//                  restore --to <time|restore point|latest> --stack-dir <new dir>
// (docs/reference.md section 11). pgBackRest does the work; this file decides which node
// to copy from, records restore points, and turns a restored primary per shard into a new
// STACK_DIR that `npm start` brings up with its replicas rebuilt.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { REPO_ROOT, buildInventory, paths, readEnvironment } from './config.mjs';
import { PgCluster } from './pg.mjs';
import { PgBackRest, backupPaths, stanzaOf, writeRestoreConfig } from './pgbackrest.mjs';
import {
  UsageError,
  backupsTable,
  chooseBackup,
  parseBackupArgs,
  parseRestoreArgs,
  parseRestorePointArgs,
  parseTarget,
  recoveryFailure,
  repositorySpaceProblem,
  restoreTargetOptions,
} from './backup-plan.mjs';
import { canConnect, sleep } from './util.mjs';

function say(line) {
  process.stdout.write(`${line}\n`);
}

function clusterOf(inventory, stackDir) {
  const password = readFileSync(paths(stackDir).pgPassword, 'utf8').trim();
  return new PgCluster(inventory, { pgBin: inventory.postgres.binDir, password, replicationMode: inventory.replicationMode });
}

/** Each node's role as the node itself says; null when it does not answer. */
async function roles(cluster, shard) {
  return Promise.all(
    shard.nodes.map(async (node) => {
      try {
        const [row] = await cluster.query(node, 'SELECT pg_is_in_recovery() AS standby, (SELECT status FROM pg_stat_wal_receiver) AS receiver');
        return { node, standby: row.standby, streaming: row.receiver === 'streaming' };
      } catch {
        return { node, standby: null, streaming: false };
      }
    }),
  );
}

function readRestorePoints(stackDir) {
  const file = backupPaths(stackDir).restorePoints;
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : [];
}

export async function backupCommand(inventory, stackDir, argv) {
  const { type } = parseBackupArgs(argv);
  const cluster = clusterOf(inventory, stackDir);
  const backrest = new PgBackRest(cluster);
  const failed = [];
  const t0 = Date.now();
  let total = 0;
  const { bavail, bsize } = statfsSync(backupPaths(stackDir).repo);
  const spaceProblem = repositorySpaceProblem(bavail * bsize, await backrest.info(), type);
  if (spaceProblem) throw new Error(spaceProblem);
  for (const shard of inventory.shards) {
    const stanza = stanzaOf(shard.id);
    const t = Date.now();
    const states = await roles(cluster, shard);
    const standby = states.find((s) => s.standby === true && s.streaming);
    const primary = states.find((s) => s.standby === false);
    if (!primary) {
      say(`${stanza}: FAILED no primary answers`);
      failed.push(stanza);
      continue;
    }
    process.stdout.write(
      `${stanza}: ${type} backup from ${standby ? `${standby.node.name} (standby)` : `${primary.node.name} (primary, no healthy standby)`} ... `,
    );
    const result = await backrest.exec([`--stanza=${stanza}`, `--type=${type}`, ...(standby ? ['--backup-standby'] : []), 'backup'], { allowFail: true });
    if (result.code !== 0) {
      say(`FAILED (exit ${result.code}): ${(result.stderr || result.stdout).trim().split('\n').pop()}`);
      failed.push(stanza);
      continue;
    }
    const verify = await backrest.exec([`--stanza=${stanza}`, 'verify'], { allowFail: true });
    const [info] = await backrest.info(stanza);
    const last = info.backup[info.backup.length - 1];
    total += last.info.repository.delta;
    const verdict = verify.code === 0 ? 'verified' : `VERIFY FAILED: ${(verify.stderr || verify.stdout).trim().split('\n').pop()}`;
    say(
      `${last.label} in ${((Date.now() - t) / 1000).toFixed(1)} s, ${(last.info.size / 1024 / 1024).toFixed(1)} MB of data, ${(last.info.repository.delta / 1024 / 1024).toFixed(1)} MB written, WAL ${last.archive.start}..${last.archive.stop}, ${verdict}`,
    );
    if (verify.code !== 0) failed.push(stanza);
  }
  say(
    `${inventory.shards.length - failed.length} of ${inventory.shards.length} shards backed up in ${((Date.now() - t0) / 1000).toFixed(1)} s (${(total / 1024 / 1024).toFixed(1)} MB written to ${backupPaths(stackDir).repo})${failed.length ? `; FAILED: ${failed.join(', ')}` : ''}`,
  );
  return failed.length === 0 ? 0 : 1;
}

export async function backupsCommand(inventory, stackDir) {
  const backrest = new PgBackRest(clusterOf(inventory, stackDir));
  say(backupsTable(await backrest.info()));
  return 0;
}

export async function restorePointCommand(inventory, stackDir, argv) {
  const { name } = parseRestorePointArgs(argv);
  const known = readRestorePoints(stackDir);
  if (known.some((point) => point.name === name)) throw new UsageError(`restore-point: "${name}" exists already (${known.find((p) => p.name === name).time})`);
  const cluster = clusterOf(inventory, stackDir);
  const primaries = await Promise.all(
    inventory.shards.map(async (shard) => {
      const primary = (await roles(cluster, shard)).find((s) => s.standby === false);
      if (!primary) throw new Error(`restore-point: ${stanzaOf(shard.id)} has no primary that answers; no restore point was made`);
      return { shard, node: primary.node };
    }),
  );
  // All shards at once; then a segment switch, so that the point is archived now, not in 10 s.
  const time = new Date().toISOString();
  const lsns = await Promise.all(
    primaries.map(async ({ shard, node }) => {
      const [row] = await cluster.query(node, 'SELECT pg_create_restore_point($1)::text AS lsn', [name]);
      await cluster.query(node, 'SELECT pg_switch_wal()');
      return [stanzaOf(shard.id), row.lsn];
    }),
  );
  known.push({ name, time, lsn: Object.fromEntries(lsns) });
  writeFileSync(backupPaths(stackDir).restorePoints, `${JSON.stringify(known, null, 2)}\n`);
  say(`restore point "${name}" at ${time} on ${lsns.map(([stanza, lsn]) => `${stanza} ${lsn}`).join(', ')}`);
  // Usable only once archived: a primary that dies before it archives the segment takes the
  // point with it (its promoted replica archives only its own timeline and the partial
  // last segment of the old one). So the command answers once every shard archived it.
  const t0 = Date.now();
  const late = await Promise.all(
    primaries.map(async ({ shard, node }, index) => {
      const lsn = lsns[index][1];
      for (const deadline = Date.now() + RESTORE_POINT_ARCHIVE_TIMEOUT_MS; Date.now() < deadline; await sleep(200)) {
        const [row] = await cluster
          .query(node, "SELECT coalesce(last_archived_wal, '') >= pg_walfile_name($1::pg_lsn) AS archived FROM pg_stat_archiver", [lsn])
          .catch(() => [{ archived: false }]);
        if (row.archived) return null;
      }
      return stanzaOf(shard.id);
    }),
  );
  const notArchived = late.filter(Boolean);
  if (notArchived.length > 0) {
    say(
      `restore point "${name}": the WAL holding it is not archived yet on ${notArchived.join(', ')} after ${RESTORE_POINT_ARCHIVE_TIMEOUT_MS / 1000} s; it cannot be restored to until it is (check archiving: pgbackrest check)`,
    );
    return 1;
  }
  say(`restore point "${name}" archived on every shard in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return 0;
}

const RESTORE_POINT_ARCHIVE_TIMEOUT_MS = 60_000;

/** Keys a restore must not carry over into the restored node's postgresql.auto.conf. */
const RECOVERY_KEYS = [
  'primary_conninfo',
  'primary_slot_name',
  'restore_command',
  'recovery_target',
  'recovery_target_time',
  'recovery_target_name',
  'recovery_target_action',
  'recovery_target_lsn',
  'recovery_target_xid',
  'recovery_target_inclusive',
  'recovery_target_timeline',
  'archive_mode',
];

function dropAutoConfKeys(cluster, dataDir, keys) {
  const file = join(dataDir, 'postgresql.auto.conf');
  if (!existsSync(file)) return;
  const kept = readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => !keys.some((key) => new RegExp(`^\\s*${key}\\s*=`).test(line)));
  writeFileSync(file, kept.join('\n'));
  cluster.writeAutoConf(dataDir, {}); // owner and mode as PostgreSQL wants them
}

export async function restoreCommand(source, sourceStackDir, argv) {
  const args = parseRestoreArgs(argv);
  const target = parseTarget(args.to, readRestorePoints(sourceStackDir));
  const stackDir = resolve(REPO_ROOT, args.stackDir);
  if (stackDir === sourceStackDir) throw new UsageError('restore: --stack-dir must be a new directory, not the stack being restored');
  if (existsSync(stackDir) && readdirSync(stackDir).length > 0)
    throw new UsageError(`restore: ${stackDir} exists and is not empty; restore into a new directory`);

  const sourceCluster = clusterOf(source, sourceStackDir);
  const backrest = new PgBackRest(sourceCluster);
  const infos = await backrest.info();
  const plan = source.shards.map((shard) => {
    const stanza = stanzaOf(shard.id);
    const info = infos.find((entry) => entry.name === stanza);
    return { shard, stanza, backup: chooseBackup(stanza, info?.backup ?? [], target) };
  });

  // The new stack: the source's shards (the slot map is the ring of these shards) on the
  // ports this environment gives, as `npm start` with that STACK_DIR would choose them.
  const environment = { ...process.env, STACK_DIR: stackDir, SHARDS: String(source.shards.length), REPLICAS: String(source.shards[0].nodes.length - 1) };
  // Ports not given are chosen clear of whatever runs (the source stack, most likely): the
  // defaults, else the first of +1000, +2000, ... that is free. `npm start` may move them again.
  const taken = async (ports) => (await Promise.all(ports.map((port) => canConnect('127.0.0.1', port, 300)))).some(Boolean);
  const defaults = readEnvironment(environment);
  const choose = async (name, base, portsAt) => {
    if (process.env[name]) return;
    for (let step = 0; step <= 20; step++) {
      if (!(await taken(portsAt(base + step * 1000)))) {
        environment[name] = String(base + step * 1000);
        return;
      }
    }
  };
  await choose('PG_BASE_PORT', defaults.pgBasePort, (base) => source.shards.flatMap((shard) => shard.nodes.map((_, index) => base + shard.id * 8 + index)));
  await choose('REDIS_PORT', defaults.redisPort, (port) => [port]);
  await choose('KAFKA_PORT', defaults.kafkaPort, (port) => [port, port + 1]);
  const config = readEnvironment(environment);
  const inventory = {
    ...buildInventory(config, undefined, { shardIds: source.shards.map((shard) => shard.id) }),
    replicationMode: source.replicationMode,
    archiving: false,
  };
  for (const shard of inventory.shards) {
    for (const node of shard.nodes) {
      if (await canConnect(node.host, node.port, 300))
        throw new UsageError(`restore: port ${node.port} (${node.name}) is taken; give the restored stack other ports (PG_BASE_PORT=...)`);
    }
  }
  const p = paths(stackDir);
  for (const dir of [p.stackDir, p.logs, p.run]) mkdirSync(dir, { recursive: true });
  // The restored databases keep the superuser's password; the services' roles get new ones at start.
  copyFileSync(paths(sourceStackDir).pgPassword, p.pgPassword);
  const cluster = clusterOf(inventory, stackDir);
  cluster.prepareDirectories();
  const restoreConfig = writeRestoreConfig(source, stackDir, cluster.user);
  say(
    `restoring ${plan.length} shards to ${target.kind === 'time' ? target.time.toISOString() : target.kind === 'name' ? `restore point "${target.name}" (${target.time.toISOString()})` : 'the end of the archived WAL'} into ${stackDir}`,
  );

  const t0 = Date.now();
  const restoreShard = async ({ shard, stanza, backup }) => {
    const t = Date.now();
    const node = inventory.shards.find((restored) => restored.id === shard.id).nodes[0];
    await backrest.exec([`--stanza=${stanza}`, `--pg1-path=${node.dataDir}`, `--set=${backup.label}`, ...restoreTargetOptions(target), 'restore'], {
      config: restoreConfig,
    });
    rmSync(join(node.dataDir, 'standby.signal'), { force: true });
    dropAutoConfKeys(cluster, node.dataDir, ['primary_conninfo', 'primary_slot_name', 'synchronous_standby_names', 'archive_mode']);
    cluster.writeConfig(node); // this stack's port and socket; archiving off while replaying
    const logFile = join(p.logs, `${node.name}.log`);
    const logStart = existsSync(logFile) ? readFileSync(logFile).length : 0;
    await cluster.start(node).catch(() => undefined); // a recovery that fails ends the server: judged below
    const deadline = Date.now() + 30 * 60_000;
    for (;;) {
      if ((await cluster.status(node)) !== 'running') throw new Error(recoveryFailure(stanza, readFileSync(logFile, 'utf8').slice(logStart)));
      try {
        const [row] = await cluster.query(node, 'SELECT pg_is_in_recovery() AS standby');
        if (!row.standby) break;
      } catch {
        /* not accepting connections yet */
      }
      if (Date.now() > deadline) throw new Error(`${stanza}: recovery did not finish within 30 minutes (see ${logFile})`);
      await sleep(500);
    }
    const last = await cluster
      .query(node, "SELECT coalesce((SELECT max(created_at) FROM urls)::text, 'none') AS last", [], 'shortener')
      .then(([row]) => row.last)
      .catch(() => 'none (no urls table)');
    await cluster.stop(node);
    dropAutoConfKeys(cluster, node.dataDir, RECOVERY_KEYS);
    cluster.writeAutoConf(node.dataDir, { synchronous_standby_names: cluster.standbyNames(shard, node) });
    say(`${stanza}: from ${backup.label} (${backup.type}) restored and recovered in ${((Date.now() - t) / 1000).toFixed(1)} s; newest link ${last}`);
  };
  // Two at a time: a 2-core machine replays WAL no faster with more.
  const queue = [...plan];
  const failures = [];
  await Promise.all(
    [0, 1].map(async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        await restoreShard(next).catch((error) => failures.push(error.message));
      }
    }),
  );
  if (failures.length > 0) {
    for (const failure of failures) say(`FAILED ${failure}`);
    await cluster.stopAll();
    return 1;
  }
  const { archiving, ...kept } = inventory;
  void archiving;
  const restoredFrom = {
    stackDir: sourceStackDir,
    to: args.to,
    target: target.kind === 'latest' ? 'latest' : target.time.toISOString(),
    at: new Date().toISOString(),
    backups: Object.fromEntries(plan.map((x) => [x.stanza, x.backup.label])),
  };
  writeFileSync(p.stackJson, `${JSON.stringify({ ...kept, restoredFrom }, null, 2)}\n`);
  say(
    `restored in ${((Date.now() - t0) / 1000).toFixed(1)} s (PostgreSQL from port ${config.pgBasePort}, Redis ${config.redisPort}, Kafka ${config.kafkaPort}); start it with: STACK_DIR=${stackDir} PORT=<port> SERVICES_BASE_PORT=<port> npm start (replicas are rebuilt from each restored primary; PG_BASE_PORT, REDIS_PORT and KAFKA_PORT may move it at that first start)`,
  );
  return 0;
}
