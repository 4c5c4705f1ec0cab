// PostgreSQL 15 nodes of the local stack: initdb for primaries, pg_basebackup for
// replicas, pg_ctl start/stop. Nodes run detached (pg_ctl) so the failover monitor can
// stop, rewind and start them independently of the launcher; the launcher never restarts
// them. Uses `pg` (node_modules) for SQL.
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { HOST, SERVICE_ROLES, paths, rolePasswordFile } from './config.mjs';
import { archiveSettings } from './pgbackrest.mjs';
import { log, run, waitFor } from './util.mjs';

/**
 * PostgreSQL refuses to run as root: as root, the data directories belong to, and every
 * server binary runs as, the `postgres` system user (PG_OS_USER to choose another).
 */
export function pgOsUser() {
  if (typeof process.geteuid !== 'function' || process.geteuid() !== 0) return undefined;
  const name = process.env.PG_OS_USER || 'postgres';
  let uid;
  let gid;
  try {
    uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
    gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  } catch {
    throw new Error(
      `running as root, PostgreSQL needs a non-root system user "${name}"; create it (useradd --system ${name}) or install postgresql-15, which creates it`,
    );
  }
  return { name, uid, gid, home: '/tmp' };
}

function chownTo(file, user) {
  if (user) chownSync(file, user.uid, user.gid);
}

/** Lets `user` reach `dir` (x on every ancestor), adding o+x where it is missing. */
function ensureTraversable(dir, user) {
  if (!user) return;
  const chain = [];
  for (let d = dir; ; d = dirname(d)) {
    chain.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of chain.reverse()) {
    const st = statSync(d);
    const ok = st.uid === user.uid ? st.mode & 0o100 : st.gid === user.gid ? st.mode & 0o010 : st.mode & 0o001;
    if (!ok) {
      log('warn', `adding o+x to ${d} so that the ${user.name} user can reach the stack directory`);
      chmodSync(d, st.mode | 0o001);
    }
  }
}

export class PgCluster {
  constructor(inventory, { pgBin, password, replicationMode }) {
    this.inventory = inventory;
    this.p = paths(inventory.stackDir);
    this.pgBin = pgBin;
    this.password = password;
    this.replicationMode = replicationMode;
    this.user = pgOsUser();
    inventory.postgres.osUser = this.user?.name ?? (process.env.USER || undefined);
  }

  /** Off only while a restore replays WAL from another stack's repository. */
  get archiving() {
    return this.inventory.archiving !== false;
  }

  shardOf(node) {
    const shard = this.inventory.shards.find((candidate) => candidate.nodes.some((n) => n.name === node.name));
    if (!shard) throw new Error(`node ${node.name} is in no shard of the inventory`);
    return shard;
  }

  bin(name) {
    return join(this.pgBin, name);
  }

  spawnOptions(extra = {}) {
    const env = {
      PATH: process.env.PATH,
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      PGPASSFILE: this.p.pgPassfile,
      SHORTENER_STACK_DIR: this.inventory.stackDir,
      HOME: this.user ? this.user.home : process.env.HOME,
    };
    return {
      env,
      cwd: this.p.pg,
      ...(this.user ? { uid: this.user.uid, gid: this.user.gid } : {}),
      ...extra,
    };
  }

  /** Directories, passfile and log files that the postgres user must own. */
  prepareDirectories() {
    const { p, user } = this;
    ensureTraversable(this.inventory.stackDir, user);
    for (const dir of [p.pg, p.pgSockets]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chownTo(dir, user);
    }
    // one passfile for every node: replication connections and pg_rewind use it (the stack's
    // tools as postgres, the failover monitor's rejoins as its own role)
    const monitorPasswordFile = rolePasswordFile(this.inventory.stackDir, 'monitor');
    const monitorPassword = existsSync(monitorPasswordFile) ? readFileSync(monitorPasswordFile, 'utf8').trim() : '';
    const lines = [`*:*:*:postgres:${this.password}`, ...(monitorPassword ? [`*:*:*:${SERVICE_ROLES.monitor}:${monitorPassword}`] : [])];
    writeFileSync(p.pgPassfile, `${lines.join('\n')}\n`, { mode: 0o600 });
    chmodSync(p.pgPassfile, 0o600);
    chownTo(p.pgPassfile, user);
    for (const node of this.nodes()) {
      const logFile = join(p.logs, `${node.name}.log`);
      closeSync(openSync(logFile, 'a'));
      chownTo(logFile, user);
    }
  }

  nodes() {
    return this.inventory.shards.flatMap((shard) => shard.nodes);
  }

  conninfo(node, extra = {}) {
    const fields = { host: HOST, port: node.port, user: 'postgres', passfile: this.p.pgPassfile, ...extra };
    return Object.entries(fields)
      .map(([k, v]) => `${k}=${String(v).replace(/([\\'])/g, '\\$1')}`)
      .join(' ');
  }

  /** Settings for a 2-core machine running a dozen nodes; rewritten at every start. */
  writeConfig(node) {
    const common = [
      '# Written by tools/stack/pg.mjs at every start of the local stack; do not edit.',
      "listen_addresses = '127.0.0.1'",
      'max_connections = 100',
      'shared_buffers = 32MB',
      'work_mem = 4MB',
      'maintenance_work_mem = 32MB',
      'effective_cache_size = 256MB',
      'max_worker_processes = 4',
      'max_parallel_workers = 2',
      'max_parallel_workers_per_gather = 0',
      'wal_level = replica',
      'wal_log_hints = on',
      'max_wal_senders = 10',
      'max_replication_slots = 10',
      'wal_keep_size = 128MB',
      'max_wal_size = 256MB',
      'min_wal_size = 64MB',
      'max_slot_wal_keep_size = 1GB',
      'hot_standby = on',
      'hot_standby_feedback = on',
      'wal_receiver_status_interval = 1s',
      'wal_sender_timeout = 5s',
      'wal_receiver_timeout = 5s',
      'wal_retrieve_retry_interval = 1s',
      'password_encryption = scram-sha-256',
      "log_line_prefix = '%m [%p] %q%a '",
      'log_connections = off',
      "log_timezone = 'UTC'",
      "timezone = 'UTC'",
      // pgBackRest (tools/stack/pgbackrest.mjs): whichever node is primary archives
      ...(this.archiving ? archiveSettings(this.inventory, this.shardOf(node).id) : ['archive_mode = off']),
    ];
    writeFileSync(join(node.dataDir, 'stack.conf'), `${common.join('\n')}\n`);
    // Per node. pg_rewind copies every file from its source, this one too: whoever rewinds
    // a node must rewrite it (port, socket directory, cluster_name) before starting it.
    const own = [
      '# This node of the local stack (tools/stack/pg.mjs); see stack.json.',
      `port = ${node.port}`,
      `unix_socket_directories = '${this.p.pgSockets}'`,
      `cluster_name = '${node.name}'`,
    ];
    writeFileSync(join(node.dataDir, 'stack-node.conf'), `${own.join('\n')}\n`);
    for (const file of ['stack.conf', 'stack-node.conf']) chownTo(join(node.dataDir, file), this.user);
    const main = join(node.dataDir, 'postgresql.conf');
    const text = readFileSync(main, 'utf8');
    if (!text.includes("include_if_exists = 'stack.conf'")) {
      writeFileSync(main, `${text}\n# local stack\ninclude_if_exists = 'stack.conf'\ninclude_if_exists = 'stack-node.conf'\n`);
    }
    writeFileSync(
      join(node.dataDir, 'pg_hba.conf'),
      [
        '# local stack: password (scram-sha-256) for everything, loopback only',
        'local   all          all                 scram-sha-256',
        'host    all          all   127.0.0.1/32  scram-sha-256',
        'local   replication  all                 scram-sha-256',
        'host    replication  all   127.0.0.1/32  scram-sha-256',
        '',
      ].join('\n'),
    );
    chownTo(join(node.dataDir, 'pg_hba.conf'), this.user);
  }

  async status(node) {
    if (!existsSync(join(node.dataDir, 'PG_VERSION'))) return 'absent';
    const result = await run(this.bin('pg_ctl'), ['status', '-D', node.dataDir], this.spawnOptions({ allowFail: true }));
    return result.code === 0 ? 'running' : 'stopped';
  }

  async start(node) {
    if ((await this.status(node)) === 'running') {
      log('info', 'postgres node already running', { node: node.name });
      return;
    }
    const logFile = join(this.p.logs, `${node.name}.log`);
    await run(
      this.bin('pg_ctl'),
      ['start', '-D', node.dataDir, '-l', logFile, '-w', '-t', '120', '-s'],
      // detached: a Ctrl-C in the launcher's terminal must not reach the postmaster
      this.spawnOptions({ detached: true, stdio: ['ignore', 'pipe', 'pipe'], timeoutMs: 130_000 }),
    ).catch((error) => {
      throw new Error(`${node.name} did not start (see ${logFile}): ${error.message}`);
    });
  }

  async stop(node) {
    if ((await this.status(node)) !== 'running') return;
    const result = await run(
      this.bin('pg_ctl'),
      ['stop', '-D', node.dataDir, '-m', 'fast', '-w', '-t', '60', '-s'],
      this.spawnOptions({ allowFail: true, timeoutMs: 70_000 }),
    );
    if (result.code !== 0 && (await this.status(node)) === 'running') {
      log('warn', 'fast shutdown failed, trying immediate', { node: node.name, output: result.stderr.trim() });
      await run(this.bin('pg_ctl'), ['stop', '-D', node.dataDir, '-m', 'immediate', '-w', '-t', '30', '-s'], this.spawnOptions({ allowFail: true }));
    }
  }

  async stopAll() {
    await Promise.all(this.nodes().map((node) => this.stop(node).catch((error) => log('error', error.message, { node: node.name }))));
  }

  client(node, database = 'postgres') {
    return new pg.Client({ host: HOST, port: node.port, user: 'postgres', password: this.password, database, connectionTimeoutMillis: 5000 });
  }

  async query(node, sql, params = [], database = 'postgres') {
    const client = this.client(node, database);
    await client.connect();
    try {
      return (await client.query(sql, params)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async initPrimary(node) {
    const marker = join(node.dataDir, 'stack-initialized');
    if (existsSync(node.dataDir) && !existsSync(marker)) {
      log('warn', 'removing an unfinished primary data directory', { node: node.name });
      await this.stop(node).catch(() => undefined);
      rmSync(node.dataDir, { recursive: true, force: true });
    }
    const pwfile = join(this.p.pg, `.pwfile-${node.name}`);
    writeFileSync(pwfile, `${this.password}\n`, { mode: 0o600 });
    chownTo(pwfile, this.user);
    try {
      await run(
        this.bin('initdb'),
        ['-D', node.dataDir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--locale=C.UTF-8', '--no-instructions'],
        this.spawnOptions({ timeoutMs: 600_000 }),
      );
    } finally {
      rmSync(pwfile, { force: true });
    }
    this.writeConfig(node);
    await this.start(node);
    const exists = await this.query(node, "SELECT 1 FROM pg_database WHERE datname = 'shortener'");
    if (exists.length === 0) await this.query(node, 'CREATE DATABASE shortener');
    writeFileSync(marker, `${new Date().toISOString()}\n`);
    chownTo(marker, this.user);
  }

  async createReplica(node, primary, shard) {
    const partial = `${node.dataDir}.partial`;
    rmSync(partial, { recursive: true, force: true });
    // a slot left by an interrupted earlier attempt
    await this.query(primary, 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [node.name]);
    await run(
      this.bin('pg_basebackup'),
      ['-D', partial, '-d', this.conninfo(primary, { application_name: node.name }), '-R', '-C', '-S', node.name, '-X', 'stream', '-c', 'fast', '--no-sync'],
      this.spawnOptions({ timeoutMs: 600_000 }),
    );
    const target = { ...node, dataDir: partial };
    this.writeConfig(target);
    rmSync(join(partial, 'stack-initialized'), { force: true });
    this.writeAutoConf(partial, {
      primary_conninfo: this.conninfo(primary, { application_name: node.name }),
      primary_slot_name: node.name,
      synchronous_standby_names: this.standbyNames(shard, node),
    });
    writeFileSync(join(partial, 'stack-initialized'), `${new Date().toISOString()}\n`);
    chownTo(join(partial, 'stack-initialized'), this.user);
    renameSync(partial, node.dataDir);
  }

  /** `ANY 1 (...)` of the shard's other nodes in quorum mode, '' in async mode. */
  standbyNames(shard, self) {
    if (this.replicationMode !== 'quorum') return '';
    const others = shard.nodes.filter((n) => n.name !== self.name).map((n) => n.name);
    return others.length === 0 ? '' : `ANY 1 (${others.join(', ')})`;
  }

  /** Sets keys in postgresql.auto.conf (as ALTER SYSTEM would) of a node that is not running. */
  writeAutoConf(dataDir, settings) {
    const file = join(dataDir, 'postgresql.auto.conf');
    const lines = existsSync(file)
      ? readFileSync(file, 'utf8').split('\n')
      : ['# Do not edit this file manually!', '# It will be overwritten by the ALTER SYSTEM command.'];
    const kept = lines.filter((line) => !Object.keys(settings).some((key) => new RegExp(`^\\s*${key}\\s*=`).test(line)) && line !== '');
    for (const [key, value] of Object.entries(settings)) kept.push(`${key} = '${String(value).replace(/'/g, "''")}'`);
    writeFileSync(file, `${kept.join('\n')}\n`, { mode: 0o600 });
    chownTo(file, this.user);
  }

  /**
   * Brings every node up. A node with a data directory is started as it is (a failover may
   * have turned it into a replica or a primary: its data directory decides). Missing nodes
   * are created: primaries by initdb, replicas by pg_basebackup from their shard's n0.
   */
  async startAll() {
    this.prepareDirectories();
    const fresh = new Set();
    await Promise.all(
      this.inventory.shards.map(async (shard) => {
        const [first, ...rest] = shard.nodes;
        // written last by initPrimary / createReplica (and copied by pg_rewind, too)
        const complete = (node) => existsSync(join(node.dataDir, 'stack-initialized'));
        // existing nodes first, all of them, whatever their role now
        await Promise.all(
          shard.nodes.filter(complete).map(async (node) => {
            this.writeConfig(node);
            await this.start(node);
          }),
        );
        if (!complete(first)) {
          log('info', 'initdb', { node: first.name });
          await this.initPrimary(first);
          fresh.add(first.name);
        }
        for (const node of rest) {
          if (complete(node)) continue;
          log('info', 'pg_basebackup', { node: node.name, from: first.name });
          await this.createReplica(node, first, shard);
          fresh.add(node.name);
          await this.start(node);
        }
        if (fresh.has(first.name) && this.replicationMode === 'quorum' && rest.length > 0) {
          // Only now: with it set before the replicas stream, CREATE DATABASE would wait.
          await waitFor(
            `replicas of shard ${shard.id} streaming`,
            async () => {
              const rows = await this.query(first, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'");
              return rows[0].n >= rest.length;
            },
            { timeoutMs: 60_000 },
          );
          const names = this.standbyNames(shard, first);
          await this.query(first, `ALTER SYSTEM SET synchronous_standby_names = '${names}'`);
          await this.query(first, 'SELECT pg_reload_conf()');
        }
      }),
    );
    return { created: [...fresh] };
  }

  async waitAllAccepting(timeoutMs = 60_000) {
    await Promise.all(
      this.nodes().map((node) =>
        waitFor(`${node.name} accepting connections`, async () => (await this.query(node, 'SELECT 1')).length === 1, { timeoutMs, intervalMs: 300 }),
      ),
    );
  }
}
