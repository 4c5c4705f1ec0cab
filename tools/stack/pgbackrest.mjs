// Backups of the local stack with pgBackRest (docs/reference.md section 11): one stanza per
// shard (`shard-<id>`), every node of the shard listed in it so that pgBackRest itself finds
// the primary and a standby to copy from, and one repository, $STACK_DIR/backup.
//
// WAL archiving is set on every node (archive_mode = on), so whichever node is primary
// archives: after a failover or a switchover the promoted replica carries on without a
// manual step, as pgBackRest's guidance for standbys asks. archive-push is asynchronous
// (archive-async, spool-path): PostgreSQL's archiver hands a segment over without waiting
// for the repository, which keeps a switchover's write pause short.
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { paths } from './config.mjs';
import { run, sleep } from './util.mjs';

/** A new segment at least every 10 s while anything is written (the RPO of the local stack). */
export const ARCHIVE_TIMEOUT_SECONDS = 10;
/** Full backups kept; older ones, their differentials and incrementals and their WAL expire. */
export const RETENTION_FULL = 2;

export function stanzaOf(shardId) {
  return `shard-${shardId}`;
}

export function backupPaths(stackDir) {
  const dir = join(stackDir, 'pgbackrest');
  return {
    dir,
    config: join(dir, 'pgbackrest.conf'),
    spool: join(dir, 'spool'),
    lock: join(dir, 'lock'),
    logs: join(paths(stackDir).logs, 'pgbackrest'),
    repo: join(stackDir, 'backup'),
    // Restore points recorded by `npm run stack -- restore-point`, kept with the backups they refer to.
    restorePoints: join(stackDir, 'backup', 'restore-points.json'),
  };
}

/** pgbackrest.conf for an inventory (stack.json): the repository, then one stanza per shard. */
export function pgbackrestConfig(inventory, { repo, workDir = inventory.stackDir, archiveAsync = true } = {}) {
  const b = backupPaths(workDir);
  const lines = [
    '# Written by tools/stack/pgbackrest.mjs at every start of the local stack; do not edit.',
    '[global]',
    `repo1-path=${repo ?? b.repo}`,
    `repo1-retention-full=${RETENTION_FULL}`,
    'repo1-retention-full-type=count',
    'compress-type=lz4',
    'start-fast=y',
    `archive-async=${archiveAsync ? 'y' : 'n'}`,
    `spool-path=${b.spool}`,
    `lock-path=${b.lock}`,
    `log-path=${b.logs}`,
    'log-level-console=warn',
    'log-level-file=info',
    'process-max=2',
    // How long a backup waits for the WAL it needs to reach the repository.
    'archive-timeout=60',
    '',
  ];
  for (const shard of inventory.shards) {
    lines.push(`[${stanzaOf(shard.id)}]`);
    shard.nodes.forEach((node, index) => {
      const n = index + 1;
      lines.push(`pg${n}-path=${node.dataDir}`, `pg${n}-port=${node.port}`, `pg${n}-socket-path=${inventory.postgres.socketDir}`, `pg${n}-user=postgres`);
    });
    lines.push('');
  }
  return `${lines.join('\n')}`;
}

/** The archiving lines of a node's stack.conf: the same on every node of a shard, so pg_rewind may copy them. */
export function archiveSettings(inventory, shardId) {
  const { config } = backupPaths(inventory.stackDir);
  // PostgreSQL runs archive_command through the shell in the data directory: $PWD is this node's.
  const command = `pgbackrest --config="${config}" --stanza=${stanzaOf(shardId)} --pg1-path="$PWD" archive-push "%p"`;
  return ['archive_mode = on', `archive_command = '${command}'`, `archive_timeout = ${ARCHIVE_TIMEOUT_SECONDS}s`];
}

/** Runs pgbackrest as the PostgreSQL OS user (it must own what it writes, as the archiver does). */
export class PgBackRest {
  constructor(cluster) {
    this.cluster = cluster;
    this.inventory = cluster.inventory;
    this.b = backupPaths(this.inventory.stackDir);
  }

  /** Config file and directories; called at every start. */
  prepare() {
    const user = this.cluster.user;
    for (const dir of [this.b.dir, this.b.spool, this.b.lock, this.b.logs, this.b.repo]) {
      mkdirSync(dir, { recursive: true, mode: 0o750 });
      if (user) chownSync(dir, user.uid, user.gid);
    }
    writeFileSync(this.b.config, pgbackrestConfig(this.inventory), { mode: 0o640 });
    if (user) chownSync(this.b.config, user.uid, user.gid);
  }

  /** `pgbackrest --config ... <args>`; resolves {code, stdout, stderr}. */
  exec(args, { allowFail = false, timeoutMs = 3_600_000, config = this.b.config } = {}) {
    return run('pgbackrest', [`--config=${config}`, ...args], this.cluster.spawnOptions({ allowFail, timeoutMs }));
  }

  /**
   * stanza-create for every shard (idempotent: it checks an existing one). A node that
   * started archiving already may hold the stanza's archive lock in its async archive-push
   * for a moment: that refusal (error 50) is waited out, any other error is not.
   */
  async ensureStanzas() {
    await Promise.all(
      this.inventory.shards.map(async (shard) => {
        for (let attempt = 1; ; attempt++) {
          const result = await this.exec([`--stanza=${stanzaOf(shard.id)}`, 'stanza-create'], { timeoutMs: 120_000, allowFail: true });
          if (result.code === 0) return;
          if (result.code !== 50 || attempt >= 30)
            throw new Error(`pgbackrest stanza-create of ${stanzaOf(shard.id)} exited with ${result.code}: ${result.stderr.trim()}`);
          await sleep(500);
        }
      }),
    );
  }

  /** `pgbackrest info` as JSON: one entry per stanza. */
  async info(stanza) {
    const { stdout } = await this.exec(['--output=json', ...(stanza ? [`--stanza=${stanza}`] : []), 'info'], { timeoutMs: 120_000 });
    return JSON.parse(stdout);
  }
}

/**
 * What a restore into `stackDir` reads the source's repository with: the source's stanzas,
 * but synchronous archive-get and its own spool, lock and log directories, so that it never
 * waits on the archive lock of the source's archive-push, which keeps running beside it.
 */
export function writeRestoreConfig(source, stackDir, user) {
  const b = backupPaths(stackDir);
  for (const dir of [b.dir, b.spool, b.lock, b.logs]) {
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    if (user) chownSync(dir, user.uid, user.gid);
  }
  const file = join(b.dir, 'restore-source.conf');
  writeFileSync(file, pgbackrestConfig(source, { repo: backupPaths(source.stackDir).repo, workDir: stackDir, archiveAsync: false }), { mode: 0o640 });
  if (user) chownSync(file, user.uid, user.gid);
  return file;
}
