// Backups and point-in-time recovery of the local stack with pgBackRest (CONTRACT section 11).
//
// - One stanza per shard (`shard<id>`), repository $STACK_DIR/backup, configuration
//   $STACK_DIR/pgbackrest/pgbackrest.conf listing every node of a shard as pg1..pgN, so that
//   pgBackRest finds whichever node is the primary now.
// - Every node archives when it is primary (archive_mode=on, archive_command = archive-push,
//   archive_timeout 10 s) and fetches from the archive when it is a standby (restore_command
//   = archive-get, pgBackRest's standby setup): stack.conf carries it on every node of a
//   shard alike, so a promoted replica archives with no step by anybody, and pg_rewind
//   (which copies stack.conf from its source) keeps it.
// - The launcher creates the stanzas (idempotent) and runs `pgbackrest check` per shard at
//   every start, and runs a BackupAgent: it keeps a journal of the topology documents
//   (Kafka is not backed up: a restore takes the topology of its target moment from this
//   journal, kept in the repository) and writes a tiny heartbeat commit on every primary
//   every 2 s, so that every shard has an archived commit after any moment it was up (a
//   time target needs one).
// - CLI (tools/stack/cli.mjs): backup, backups, restore-point, restore.
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
  appendFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { HOST, buildInventory, paths, readEnvironment } from './config.mjs';
import { PgCluster, pgOsUser } from './pg.mjs';
import { log, run, sleep, waitFor } from './util.mjs';

const require = createRequire(import.meta.url);
const plan = require('./pgbackrest-plan.cjs');

export const PGBACKREST = process.env.PGBACKREST_BIN || 'pgbackrest';
/** Full backups kept (older fulls and the backups and WAL depending on them are expired). */
export const RETENTION_FULL = 2;
export const ARCHIVE_TIMEOUT_S = 10;
const HEARTBEAT_MS = 2000;

export const stanzaOf = (shardId) => `shard${shardId}`;

export function backupPaths(stackDir) {
  const repo = join(stackDir, 'backup');
  return {
    repo,
    dir: join(stackDir, 'pgbackrest'),
    conf: join(stackDir, 'pgbackrest', 'pgbackrest.conf'),
    restoreConf: join(stackDir, 'pgbackrest', 'restore-source.conf'),
    spool: join(stackDir, 'pgbackrest', 'spool'),
    log: join(stackDir, 'logs', 'pgbackrest'),
    lock: join(stackDir, 'run', 'pgbackrest'),
    // our own files in the repository, beside pgBackRest's archive/ and backup/
    meta: join(repo, 'shortener'),
    journal: join(repo, 'shortener', 'topology.jsonl'),
    restorePoints: join(repo, 'shortener', 'restore-points.jsonl'),
    seed: join(stackDir, 'restore', 'topology.json'),
    restoredFrom: join(stackDir, 'restore', 'restored-from.json'),
  };
}

/** Lines of stack.conf for every node of a shard (the same on all of them, see above). */
export function archiveSettings(stackDir, shardId) {
  const conf = backupPaths(stackDir).conf;
  // PostgreSQL runs these in the data directory and passes %p relative to it; pgBackRest
  // resolves a relative path against pg1-path, which must then be this node's directory.
  const base = `${PGBACKREST} --config="${conf}" --stanza=${stanzaOf(shardId)} --pg1-path="$(pwd -P)"`;
  const quoted = (value) => `'${value.replace(/'/g, "''")}'`;
  return [
    'archive_mode = on',
    `archive_command = ${quoted(`${base} archive-push %p`)}`,
    `archive_timeout = ${ARCHIVE_TIMEOUT_S}s`,
    `restore_command = ${quoted(`${base} archive-get %f "%p"`)}`,
  ];
}

function readJsonLines(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .flatMap((line) => {
      try {
        return [JSON.parse(line)];
      } catch {
        return [];
      }
    });
}

/** The shards to back up: the stack's, and any a resharding added (from the newest topology). */
export function shardsOf(inventory, topology) {
  const byId = new Map(inventory.shards.map((shard) => [shard.id, shard]));
  if (topology) {
    for (const shard of topology.shards) {
      if (byId.has(shard.id)) continue;
      const names = [shard.primary, ...shard.replicas];
      const nodes = names.map((name) => {
        const address = topology.nodes.find((n) => n.name === name) ?? { host: HOST, port: 0 };
        return { name, host: address.host, port: address.port, dataDir: join(inventory.stackDir, 'pg', name) };
      });
      byId.set(shard.id, { id: shard.id, nodes });
    }
  }
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

function latestJournalTopology(stackDir) {
  const journal = readJsonLines(backupPaths(stackDir).journal);
  return journal.reduce((best, entry) => (!best || entry.epoch > best.epoch ? entry : best), undefined)?.topology;
}

export class Backups {
  constructor(inventory, password) {
    this.inventory = inventory;
    this.password = password;
    this.p = backupPaths(inventory.stackDir);
    this.user = pgOsUser();
  }

  shards() {
    return shardsOf(this.inventory, latestJournalTopology(this.inventory.stackDir));
  }

  /** Directories owned by the PostgreSQL user (archive_command runs as that user) and the configuration. */
  prepare(shards = this.shards()) {
    for (const dir of [this.p.repo, this.p.dir, this.p.spool, this.p.log, this.p.lock, this.p.meta]) {
      mkdirSync(dir, { recursive: true, mode: 0o750 });
      if (this.user) chownSync(dir, this.user.uid, this.user.gid);
    }
    this.writeConf(this.p.conf, shards, { repo: this.p.repo });
  }

  writeConf(file, shards, { repo }) {
    const pgStack = paths(this.inventory.stackDir);
    const lines = [
      '# Written by tools/stack/pgbackrest.mjs at every start and backup; do not edit.',
      '[global]',
      `repo1-path=${repo}`,
      `repo1-retention-full=${RETENTION_FULL}`,
      'repo1-retention-full-type=count',
      `log-path=${this.p.log}`,
      `lock-path=${this.p.lock}`,
      `spool-path=${this.p.spool}`,
      'log-level-console=warn',
      'log-level-file=info',
      'compress-type=lz4',
      'start-fast=y',
      'archive-timeout=60',
      'process-max=1',
      '',
    ];
    for (const shard of shards) {
      lines.push(`[${stanzaOf(shard.id)}]`);
      shard.nodes.forEach((node, i) => {
        lines.push(
          `pg${i + 1}-path=${node.dataDir}`,
          `pg${i + 1}-port=${node.port}`,
          `pg${i + 1}-socket-path=${pgStack.pgSockets}`,
          `pg${i + 1}-user=postgres`,
        );
      });
      lines.push('');
    }
    writeFileSync(file, `${lines.join('\n')}`, { mode: 0o640 });
    chmodSync(file, 0o640);
    if (this.user) chownSync(file, this.user.uid, this.user.gid);
  }

  /** Runs pgbackrest as the PostgreSQL user. Resolves {code, stdout, stderr}. */
  exec(args, { config = this.p.conf, allowFail = true, timeoutMs = 1_800_000 } = {}) {
    const env = {
      PATH: process.env.PATH,
      LANG: 'C.UTF-8',
      TZ: 'UTC',
      HOME: this.user ? '/tmp' : process.env.HOME,
      PGPASSFILE: paths(this.inventory.stackDir).pgPassfile,
      SHORTENER_STACK_DIR: this.inventory.stackDir,
    };
    return run(PGBACKREST, [`--config=${config}`, ...args], {
      env,
      cwd: '/tmp',
      allowFail,
      timeoutMs,
      ...(this.user ? { uid: this.user.uid, gid: this.user.gid } : {}),
    });
  }

  client(node, database = 'postgres') {
    return new pg.Client({ host: node.host, port: node.port, user: 'postgres', password: this.password, database, connectionTimeoutMillis: 3000 });
  }

  async query(node, sql, params = []) {
    const client = this.client(node);
    client.on('error', () => undefined);
    await client.connect();
    try {
      return (await client.query(sql, params)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Each node's role now: primary, a streaming standby (with its replay lag), or down. */
  async roles(shard) {
    return Promise.all(
      shard.nodes.map(async (node) => {
        try {
          const [row] = await this.query(
            node,
            `SELECT pg_is_in_recovery() AS standby,
                    (SELECT status FROM pg_stat_wal_receiver) AS receiver,
                    EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float AS replay_age`,
          );
          return { node, role: row.standby ? 'standby' : 'primary', streaming: row.receiver === 'streaming', replayAge: row.replay_age };
        } catch (error) {
          return { node, role: 'down', error: error.message };
        }
      }),
    );
  }

  /** stanza-create (idempotent) for every shard, then `pgbackrest check`. One result per shard. */
  async ensureStanzas({ check = true, shards = this.shards() } = {}) {
    this.prepare(shards);
    return Promise.all(
      shards.map(async (shard) => {
        const stanza = stanzaOf(shard.id);
        const fresh = !existsSync(join(this.p.repo, 'archive', stanza, 'archive.info'));
        const created = await this.exec([`--stanza=${stanza}`, 'stanza-create'], { timeoutMs: 120_000 });
        if (created.code !== 0) return { shard: shard.id, ok: false, step: 'stanza-create', message: lastLines(created) };
        if (fresh) {
          // archive-push failed for every segment completed before the stanza existed: not a fault
          const primary = (await this.roles(shard)).find((r) => r.role === 'primary');
          if (primary) await this.query(primary.node, "SELECT pg_stat_reset_shared('archiver')").catch(() => undefined);
        }
        if (!check) return { shard: shard.id, ok: true, step: 'stanza-create' };
        const checked = await this.exec([`--stanza=${stanza}`, 'check'], { timeoutMs: 120_000 });
        return { shard: shard.id, ok: checked.code === 0, step: 'check', message: checked.code === 0 ? 'ok' : lastLines(checked) };
      }),
    );
  }

  async info() {
    const result = await this.exec(['--output=json', 'info'], { timeoutMs: 120_000 });
    if (result.code !== 0) throw new Error(`pgbackrest info failed: ${lastLines(result)}`);
    return JSON.parse(result.stdout);
  }

  /** The newest commit in the archive of a shard (newest segment, or the one before it). */
  async lastArchivedCommit(stanzaInfo, pgBin) {
    const archive = stanzaInfo.archive?.[stanzaInfo.archive.length - 1];
    let segment = archive?.max;
    if (!segment) return null;
    const dir = mkdtempSync(join('/tmp', 'shortener-wal-'));
    if (this.user) chownSync(dir, this.user.uid, this.user.gid);
    try {
      for (let i = 0; i < 3 && segment; i++) {
        const file = join(dir, segment);
        const got = await this.exec([`--stanza=${stanzaInfo.name}`, 'archive-get', segment, file], { timeoutMs: 60_000 });
        if (got.code === 0) {
          const dump = await run(join(pgBin, 'pg_waldump'), [file], { allowFail: true, env: { PATH: process.env.PATH, TZ: 'UTC' }, timeoutMs: 60_000 });
          const last = plan.lastCommitFromWaldump(dump.stdout);
          if (last) return last;
        }
        segment = plan.previousSegment(segment);
      }
      return null;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

function lastLines(result, n = 4) {
  return `${result.stderr}\n${result.stdout}`.trim().split('\n').slice(-n).join(' | ');
}

/** The repository's free space, and a refusal when a backup would not fit (the "disk full" failure). */
export function repositorySpace(repo) {
  const st = statfsSync(repo);
  return { free: st.bavail * st.bsize, total: st.blocks * st.bsize };
}

// ---------------------------------------------------------------------------------------
// The launcher's side: stanzas and check at start, the topology journal and heartbeats.

/**
 * Follows `cluster.topology` (every document, with its Kafka timestamp) into the journal,
 * keeps pgbackrest.conf and the stanzas in step with new shards, and writes a heartbeat
 * commit on every primary every HEARTBEAT_MS.
 */
export class BackupAgent {
  constructor(inventory, password) {
    this.inventory = inventory;
    this.backups = new Backups(inventory, password);
    this.p = backupPaths(inventory.stackDir);
    this.epochs = new Set(readJsonLines(this.p.journal).map((entry) => entry.epoch));
    this.topology = latestJournalTopology(inventory.stackDir);
    this.clients = new Map();
    this.stopped = false;
  }

  async start() {
    const { Kafka, logLevel } = await import('kafkajs');
    const kafka = new Kafka({ clientId: 'stack-backup-agent', brokers: this.inventory.kafka.brokers, logLevel: logLevel.NOTHING });
    this.consumer = kafka.consumer({ groupId: `stack-backup-agent-${process.pid}-${Date.now()}`, sessionTimeout: 10_000, heartbeatInterval: 1000 });
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: 'cluster.topology', fromBeginning: true });
    void this.consumer
      .run({
        eachMessage: async ({ message }) => {
          if (!message.value) return;
          try {
            this.record(JSON.parse(message.value.toString()), new Date(Number(message.timestamp)));
          } catch (error) {
            log('warn', 'backup agent: unreadable topology record', { err: error.message });
          }
        },
      })
      .catch((error) => log('warn', 'backup agent: topology consumer stopped', { err: error.message }));
    this.timer = setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
  }

  record(topology, at) {
    if (!Number.isInteger(topology?.epoch) || this.epochs.has(topology.epoch)) return;
    this.epochs.add(topology.epoch);
    mkdirSync(this.p.meta, { recursive: true });
    appendFileSync(this.p.journal, `${JSON.stringify({ epoch: topology.epoch, at: at.toISOString(), topology })}\n`);
    const known = new Set(shardsOf(this.inventory, this.topology).map((s) => s.id));
    if (!this.topology || topology.epoch > this.topology.epoch) this.topology = topology;
    const added = topology.shards.filter((s) => !known.has(s.id));
    const shards = shardsOf(this.inventory, this.topology);
    this.backups.prepare(shards);
    if (added.length > 0) {
      // a resharding added a shard: it gets its stanza as soon as its primary answers
      void (async () => {
        for (let attempt = 0; attempt < 30 && !this.stopped; attempt++) {
          const results = await this.backups.ensureStanzas({ check: false, shards: shards.filter((s) => added.some((a) => a.id === s.id)) });
          if (results.every((r) => r.ok)) return log('info', 'stanza created for a new shard', { shards: added.map((s) => s.id) });
          await sleep(5000);
        }
      })();
    }
  }

  async heartbeat() {
    if (this.stopped || this.beating) return;
    this.beating = true;
    try {
      const shards = this.topology
        ? this.topology.shards.map((s) => this.topology.nodes.find((n) => n.name === s.primary)).filter(Boolean)
        : this.inventory.shards.map((s) => s.nodes[0]);
      await Promise.all(shards.map((node) => this.beat(node)));
    } finally {
      this.beating = false;
    }
  }

  async beat(node) {
    let client = this.clients.get(node.name);
    try {
      if (!client) {
        client = this.backups.client(node);
        client.on('error', () => this.clients.delete(node.name));
        this.clients.set(node.name, client);
        await client.connect();
        await client.query("SET statement_timeout = '2s'");
      }
      // A commit with a timestamp and nothing else; it need not wait for a standby.
      await client.query('BEGIN');
      await client.query('SET LOCAL synchronous_commit = local');
      await client.query("SELECT pg_logical_emit_message(true, 'shortener-heartbeat', '')");
      await client.query('COMMIT');
    } catch {
      this.clients.delete(node.name);
      await client?.end().catch(() => undefined);
    }
  }

  async stop() {
    this.stopped = true;
    clearInterval(this.timer);
    await this.consumer?.disconnect().catch(() => undefined);
    await Promise.all([...this.clients.values()].map((c) => c.end().catch(() => undefined)));
  }
}

/**
 * The launcher's step once PostgreSQL and Kafka are up and before the services start:
 * stanzas and checks, the topology of a restored stack put on the new Kafka, the agent.
 */
export async function startBackups(inventory, password) {
  const p = backupPaths(inventory.stackDir);
  const backups = new Backups(inventory, password);
  const t = Date.now();
  const created = await backups.ensureStanzas({ check: false });
  for (const r of created.filter((x) => !x.ok)) {
    log('warn', `pgbackrest stanza-create failed for shard ${r.shard}: ${r.message}`, { shard: r.shard }, { important: true });
  }
  log('info', 'backup stanzas ready', { repository: p.repo, seconds: (Date.now() - t) / 1000 });
  if (existsSync(p.seed)) await seedTopology(inventory, JSON.parse(readFileSync(p.seed, 'utf8')));
  const agent = new BackupAgent(inventory, password);
  await agent.start().catch((error) => log('warn', 'backup agent did not start', { err: error.message }, { important: true }));
  // `pgbackrest check` (a WAL switch archived within archive-timeout) beside the services' start
  const checked = Promise.all(
    inventory.shards.map(async (shard) => {
      const result = await backups.exec([`--stanza=${stanzaOf(shard.id)}`, 'check'], { timeoutMs: 120_000 });
      if (result.code === 0) log('info', 'pgbackrest check ok', { shard: shard.id, stanza: stanzaOf(shard.id) });
      else log('warn', `pgbackrest check failed for shard ${shard.id}: ${lastLines(result)}`, { shard: shard.id }, { important: true });
      return { shard: shard.id, ok: result.code === 0 };
    }),
  ).catch((error) => log('warn', 'pgbackrest check could not run', { err: error.message }));
  return { agent, checked };
}

/** A restored stack's first start: its (empty) cluster.topology gets the topology of the target moment. */
async function seedTopology(inventory, topology) {
  const { Kafka, logLevel } = await import('kafkajs');
  const kafka = new Kafka({ clientId: 'stack-restore', brokers: inventory.kafka.brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets('cluster.topology');
    if (offsets.some((o) => Number(o.high) > 0)) return;
  } finally {
    await admin.disconnect();
  }
  const producer = kafka.producer();
  await producer.connect();
  try {
    // term 0: the new stack's monitors count their leader terms from its own Kafka
    await producer.send({
      topic: 'cluster.topology',
      acks: -1,
      messages: [{ key: 'topology', value: JSON.stringify({ ...topology, term: 0, version: 1, at: new Date().toISOString() }) }],
    });
  } finally {
    await producer.disconnect();
  }
  log('info', 'restored topology published', { epoch: topology.epoch, shards: topology.shards.length }, { important: true });
}

// ---------------------------------------------------------------------------------------
// Commands (npm run stack -- backup | backups | restore-point | restore)

function say(line) {
  process.stdout.write(`${line}\n`);
}

async function backupCommand(backups, argv) {
  const { type } = plan.parseBackupArgs(argv);
  const shards = backups.shards();
  backups.prepare(shards);
  const t0 = Date.now();
  const outcome = [];
  // two shards at a time: pgBackRest itself runs one process per backup (process-max=1)
  const queue = [...shards];
  const worker = async () => {
    for (let shard = queue.shift(); shard; shard = queue.shift()) await backupShard(shard);
  };
  const backupShard = async (shard) => {
    const t = Date.now();
    const stanza = stanzaOf(shard.id);
    try {
      const created = await backups.exec([`--stanza=${stanza}`, 'stanza-create'], { timeoutMs: 120_000 });
      if (created.code !== 0) throw new Error(`stanza-create: ${lastLines(created)}`);
      const roles = await backups.roles(shard);
      const primary = roles.find((r) => r.role === 'primary');
      if (!primary) throw new Error(`no primary answers (${roles.map((r) => `${r.node.name}: ${r.role}`).join(', ')})`);
      const standby = roles.find((r) => r.role === 'standby' && r.streaming && (r.replayAge === null || r.replayAge < 60));
      // the "full repository disk" failure: refuse before pgBackRest fills the disk
      const [{ size }] = await backups.query(primary.node, 'SELECT sum(pg_database_size(oid))::bigint AS size FROM pg_database');
      const need = (type === 'full' ? Number(size) : Number(size) / 4) + 64 * 1024 * 1024;
      const { free } = repositorySpace(backups.p.repo);
      if (free < need) {
        throw new Error(
          `repository disk full: ${plan.formatBytes(free)} free in ${backups.p.repo}, a ${type} backup of this shard needs up to ${plan.formatBytes(need)}`,
        );
      }
      const args = [`--stanza=${stanza}`, `--type=${type}`, ...(standby ? ['--backup-standby'] : []), 'backup'];
      const result = await backups.exec(args);
      if (result.code !== 0) throw new Error(lastLines(result));
      const expired = await backups.exec([`--stanza=${stanza}`, 'expire'], { timeoutMs: 300_000 });
      if (expired.code !== 0) throw new Error(`expire: ${lastLines(expired)}`);
      const verified = await backups.exec([`--stanza=${stanza}`, 'verify'], { timeoutMs: 1_800_000 });
      if (verified.code !== 0) throw new Error(`verify: ${lastLines(verified)}`);
      const info = (await backups.info()).find((s) => s.name === stanza);
      const last = info?.backup?.[info.backup.length - 1];
      const seconds = (Date.now() - t) / 1000;
      say(
        `shard ${shard.id}: ${last?.type ?? type} backup ${last?.label ?? '?'} from ${standby ? `standby ${standby.node.name}` : `primary ${primary.node.name}`} ` +
          `in ${seconds.toFixed(1)} s, ${plan.formatBytes(last?.info?.size)} (${plan.formatBytes(last?.info?.repository?.delta)} in the repository), verified`,
      );
      outcome.push({ shard: shard.id, ok: true, seconds, size: last?.info?.size, label: last?.label });
    } catch (error) {
      say(`shard ${shard.id}: FAILED ${error.message}`);
      outcome.push({ shard: shard.id, ok: false, error: error.message });
    }
  };
  await Promise.all([worker(), worker()]);
  outcome.sort((x, y) => x.shard - y.shard);
  const failed = outcome.filter((o) => !o.ok);
  say(
    `backup ${type}: ${outcome.length - failed.length}/${outcome.length} shards in ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
      `retention: ${RETENTION_FULL} full backups (older ones expired)${failed.length ? `; FAILED: ${failed.map((f) => `shard ${f.shard}`).join(', ')}` : ''}`,
  );
  return failed.length ? 1 : 0;
}

async function backupsCommand(backups) {
  const info = await backups.info();
  const shards = backups.shards();
  for (const shard of shards) {
    const stanza = info.find((s) => s.name === stanzaOf(shard.id));
    say(`shard ${shard.id} (stanza ${stanzaOf(shard.id)}): ${stanza ? stanza.status.message : 'no stanza'}`);
    if (!stanza) continue;
    const rows = (stanza.backup ?? []).map((b) => [
      b.label,
      b.type,
      new Date(b.timestamp.start * 1000).toISOString(),
      new Date(b.timestamp.stop * 1000).toISOString(),
      plan.formatBytes(b.info.size),
      plan.formatBytes(b.info.repository.delta),
      `${b.archive.start} .. ${b.archive.stop}`,
    ]);
    if (rows.length)
      say(
        plan.table(
          ['  label', 'type', 'start', 'stop', 'size', 'stored', 'WAL range'],
          rows.map((r) => [`  ${r[0]}`, ...r.slice(1)]),
        ),
      );
    const archive = stanza.archive?.[stanza.archive.length - 1];
    say(`  archived WAL: ${archive?.min ?? '-'} .. ${archive?.max ?? '-'}`);
  }
  const { free, total } = repositorySpace(backups.p.repo);
  say(`repository ${backups.p.repo}: ${plan.formatBytes(free)} free of ${plan.formatBytes(total)}; retention ${RETENTION_FULL} full backups`);
  return 0;
}

async function restorePointCommand(backups, argv) {
  const { name } = plan.parseRestorePointArgs(argv);
  const known = readJsonLines(backups.p.restorePoints);
  if (known.some((p) => p.name === name)) throw new plan.UsageError(`a restore point named "${name}" exists already (recovery would stop at the first one)`);
  const shards = backups.shards();
  const primaries = await Promise.all(
    shards.map(async (shard) => {
      const primary = (await backups.roles(shard)).find((r) => r.role === 'primary');
      if (!primary) throw new Error(`shard ${shard.id} has no primary answering: no restore point was made`);
      const client = backups.client(primary.node);
      await client.connect();
      return { shard, client };
    }),
  );
  // all connections first, then the points at once, as close together as the shards allow
  try {
    const lsns = await Promise.all(
      primaries.map(async ({ shard, client }) => ({
        shard: shard.id,
        lsn: (await client.query('SELECT pg_create_restore_point($1)::text AS lsn', [name])).rows[0].lsn,
      })),
    );
    const at = new Date().toISOString();
    mkdirSync(backups.p.meta, { recursive: true });
    appendFileSync(backups.p.restorePoints, `${JSON.stringify({ name, at, shards: lsns })}\n`);
    for (const { shard, lsn } of lsns) say(`shard ${shard}: restore point "${name}" at ${lsn}`);
    say(`restore point "${name}" on ${lsns.length} shards at ${at}`);
    return 0;
  } finally {
    await Promise.all(primaries.map(({ client }) => client.end().catch(() => undefined)));
  }
}

/** Turns the target into per-shard plans, or throws a TargetError before anything is written. */
async function planRestore(backups, target) {
  const journal = readJsonLines(backups.p.journal);
  const entry = plan.topologyAt(journal, target.at);
  if (!entry) {
    const first = journal.map((e) => e.at).sort()[0];
    throw new plan.TargetError(`no topology was recorded at or before ${target.label}${first ? ` (the journal starts at ${first})` : ''}`);
  }
  const info = await backups.info();
  const shards = await Promise.all(
    entry.topology.shards.map(async (shard) => {
      const stanza = info.find((s) => s.name === stanzaOf(shard.id));
      if (!stanza) throw new plan.TargetError(`shard ${shard.id} (in the topology at the target) has no stanza in ${backups.p.repo}`);
      const list = (stanza.backup ?? [])
        .filter((b) => !b.error)
        .map((b) => ({ label: b.label, type: b.type, start: new Date(b.timestamp.start * 1000), stop: new Date(b.timestamp.stop * 1000) }));
      return { id: shard.id, backups: list, lastArchivedCommit: await backups.lastArchivedCommit(stanza, backups.inventory.postgres.binDir) };
    }),
  );
  return { entry, ...plan.checkTarget(target, shards), shards };
}

function editAutoConf(dataDir, remove, set, user) {
  const file = join(dataDir, 'postgresql.auto.conf');
  const keys = [...remove, ...Object.keys(set)];
  const kept = (existsSync(file) ? readFileSync(file, 'utf8') : '')
    .split('\n')
    .filter((line) => line.trim() !== '' && !keys.some((k) => new RegExp(`^\\s*${k}\\s*=`).test(line)));
  for (const [key, value] of Object.entries(set)) kept.push(`${key} = '${String(value).replace(/'/g, "''")}'`);
  writeFileSync(file, `${kept.join('\n')}\n`, { mode: 0o600 });
  if (user) chownSync(file, user.uid, user.gid);
}

async function restoreCommand(backups, argv) {
  const t0 = Date.now();
  const args = plan.parseRestoreArgs(argv);
  const source = backups.inventory;
  const stackDir = resolve(process.cwd(), args.stackDir);
  if (stackDir === source.stackDir) throw new plan.UsageError('--stack-dir must be a new directory, not the stack being restored from');
  if (existsSync(stackDir) && readdirSync(stackDir).length > 0)
    throw new plan.UsageError(`--stack-dir ${stackDir} exists and is not empty: restore into a new directory`);
  const target = plan.parseTarget(args.to, readJsonLines(backups.p.restorePoints));
  const { entry, plan: steps } = await planRestore(backups, target);
  for (const step of steps)
    say(`shard ${step.shard}: from ${step.backup.type} backup ${step.backup.label} (finished ${step.backup.stop.toISOString()}) to ${target.label}`);
  say(`topology epoch ${entry.epoch} (recorded ${entry.at}): ${entry.topology.shards.map((s) => `shard ${s.id} primary ${s.primary}`).join(', ')}`);
  if (args.dryRun) {
    say(`target ${target.label} is restorable`);
    return 0;
  }

  const config = readEnvironment({ ...process.env, STACK_DIR: stackDir });
  const sourcePorts = new Set([...source.shards.flatMap((s) => s.nodes.map((n) => n.port)), source.redis.port, Number(source.kafka.brokers[0].split(':')[1])]);
  const layout = plan.restoredLayout(entry.topology, { pgBasePort: config.pgBasePort, replicas: args.replicas });
  const wanted = [...layout.shards.flatMap((s) => s.nodes.map((n) => n.port)), config.redisPort, config.kafkaPort, config.kafkaPort + 1];
  const clash = wanted.filter((port) => sourcePorts.has(port));
  if (clash.length > 0) {
    throw new plan.UsageError(
      `the restored stack needs ports of its own (${clash.join(', ')} belong to ${source.stackDir}): set PG_BASE_PORT, REDIS_PORT and KAFKA_PORT`,
    );
  }
  const sp = paths(source.stackDir);
  const np = paths(stackDir);
  for (const dir of [np.stackDir, np.logs, np.run, join(stackDir, 'restore')]) mkdirSync(dir, { recursive: true });
  copyFileSync(sp.pgPassword, np.pgPassword);
  if (existsSync(sp.adminToken)) copyFileSync(sp.adminToken, np.adminToken);
  const previous = {
    createdAt: new Date().toISOString(),
    replicationMode: entry.topology.replicationMode ?? source.replicationMode,
    shards: layout.shards,
    redis: { port: config.redisPort },
    kafka: { brokers: [`${HOST}:${config.kafkaPort}`] },
  };
  const inventory = buildInventory(config, previous);
  const password = readFileSync(np.pgPassword, 'utf8').trim();
  const cluster = new PgCluster(inventory, { pgBin: source.postgres.binDir, password, replicationMode: inventory.replicationMode });
  writeFileSync(np.stackJson, `${JSON.stringify({ ...inventory, postgres: { ...inventory.postgres, binDir: source.postgres.binDir } }, null, 2)}\n`);
  const restored = new Backups(inventory, password);
  writeFileSync(backupPaths(stackDir).seed, `${JSON.stringify(layout.topology, null, 2)}\n`);
  writeFileSync(
    backupPaths(stackDir).restoredFrom,
    `${JSON.stringify({ from: source.stackDir, repository: backups.p.repo, target: target.label, epoch: entry.epoch, at: new Date().toISOString() }, null, 2)}\n`,
  );
  cluster.prepareDirectories();
  restored.prepare(inventory.shards);
  // reads the source repository, writes into the new nodes: the source's own conf stays untouched
  restored.writeConf(
    restored.p.restoreConf,
    inventory.shards.map((s) => ({ ...s, nodes: [s.nodes[0]] })),
    { repo: backups.p.repo },
  );
  const user = pgOsUser();

  const restoreShard = async (shard) => {
    const step = steps.find((s) => s.shard === shard.id);
    const [primary, ...replicas] = shard.nodes;
    const stanza = stanzaOf(shard.id);
    const t = Date.now();
    mkdirSync(primary.dataDir, { recursive: true, mode: 0o700 });
    if (user) chownSync(primary.dataDir, user.uid, user.gid);
    const targetArgs =
      target.type === 'time'
        ? ['--type=time', `--target=${target.at.toISOString().replace('T', ' ').replace('Z', '+00')}`]
        : ['--type=name', `--target=${target.name}`];
    const result = await restored.exec([`--stanza=${stanza}`, `--set=${step.backup.label}`, ...targetArgs, '--target-action=promote', 'restore'], {
      config: restored.p.restoreConf,
    });
    if (result.code !== 0) throw new Error(`shard ${shard.id}: pgbackrest restore failed: ${lastLines(result)}`);
    // This stack's settings (port, archiving into its own repository); recovery reads the source's archive.
    cluster.writeConfig(primary);
    rmSync(join(primary.dataDir, 'standby.signal'), { force: true });
    const fromSource = `${PGBACKREST} --config="${restored.p.restoreConf}" --stanza=${stanza} --pg1-path="$(pwd -P)" archive-get %f "%p"`;
    editAutoConf(primary.dataDir, ['primary_conninfo', 'primary_slot_name'], { restore_command: fromSource, synchronous_standby_names: '' }, user);
    const logFile = join(np.logs, `${primary.name}.log`);
    const fatal = () =>
      (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '')
        .split('\n')
        .filter((l) => /FATAL|PANIC/.test(l))
        .slice(-3)
        .join(' | ');
    await cluster.start(primary).catch((error) => {
      throw new Error(`shard ${shard.id}: ${primary.name} did not start recovery: ${fatal() || error.message}`);
    });
    for (const deadline = Date.now() + 900_000; ; await sleep(500)) {
      if ((await cluster.status(primary)) !== 'running') throw new Error(`shard ${shard.id}: ${primary.name} stopped during recovery: ${fatal()}`);
      const promoted = await cluster
        .query(primary, 'SELECT NOT pg_is_in_recovery() AS p')
        .then((rows) => rows[0].p)
        .catch(() => false);
      if (promoted) break;
      if (Date.now() > deadline) throw new Error(`shard ${shard.id}: ${primary.name} still recovering after 15 minutes (see ${logFile})`);
    }
    editAutoConf(
      primary.dataDir,
      ['restore_command', 'recovery_target_time', 'recovery_target_name', 'recovery_target_action', 'recovery_target_timeline'],
      {},
      user,
    );
    await cluster.query(primary, 'SELECT pg_reload_conf()');
    const recovered = (Date.now() - t) / 1000;
    for (const node of replicas) {
      await cluster.createReplica(node, primary, shard);
      await cluster.start(node);
    }
    if (replicas.length > 0) {
      await waitFor(
        `replicas of shard ${shard.id} streaming`,
        async () => (await cluster.query(primary, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'"))[0].n >= replicas.length,
        { timeoutMs: 120_000 },
      );
      const names = cluster.standbyNames(shard, primary);
      await cluster.query(primary, `ALTER SYSTEM SET synchronous_standby_names = '${names}'`);
      await cluster.query(primary, 'SELECT pg_reload_conf()');
    }
    say(
      `shard ${shard.id}: ${primary.name} recovered in ${recovered.toFixed(1)} s, ${replicas.length} replica(s) rebuilt, ${((Date.now() - t) / 1000).toFixed(1)} s in all`,
    );
  };

  try {
    await Promise.all(inventory.shards.map((shard) => restoreShard(shard)));
    const results = await restored.ensureStanzas({ check: false, shards: inventory.shards });
    for (const r of results.filter((x) => !x.ok)) say(`shard ${r.shard}: warning: the new stack's stanza: ${r.message}`);
  } catch (error) {
    await cluster.stopAll();
    throw error;
  }
  await cluster.stopAll();
  say(`restored ${inventory.shards.length} shards to ${target.label} into ${stackDir} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  say(
    `start it with: STACK_DIR=${stackDir} PORT=<port> SERVICES_BASE_PORT=<port> npm start   (PostgreSQL ${config.pgBasePort}+, Redis ${config.redisPort}, Kafka ${config.kafkaPort})`,
  );
  return 0;
}

/** Entry point of the CLI commands; returns the exit code. */
export async function main(command, argv, inventory, password) {
  const backups = new Backups(inventory, password);
  try {
    switch (command) {
      case 'backup':
        return await backupCommand(backups, argv);
      case 'backups':
        return await backupsCommand(backups);
      case 'restore-point':
        return await restorePointCommand(backups, argv);
      case 'restore':
        return await restoreCommand(backups, argv);
      default:
        throw new plan.UsageError(`unknown command ${command}`);
    }
  } catch (error) {
    if (error instanceof plan.UsageError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    if (error instanceof plan.TargetError) {
      process.stderr.write(`refused: ${error.message}\n`);
      return 3;
    }
    process.stderr.write(`${command} failed: ${error.message}\n`);
    return 1;
  }
}
