// Pure logic of the backup commands (tools/stack/pgbackrest.mjs): argument parsing, restore
// target checks, the topology as of a moment, pg_waldump parsing. No I/O here, so that it
// is unit-tested (pgbackrest-plan.spec.ts). CommonJS so that both the ESM scripts and jest
// (ts-jest, CommonJS) load it.
'use strict';

class UsageError extends Error {}
/** A restore target pgBackRest or PostgreSQL could not reach: refused before anything is restored. */
class TargetError extends Error {}

const BACKUP_TYPES = ['full', 'diff', 'incr'];
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
// PostgreSQL takes any text up to 63 bytes; we keep names that are safe in a shell and a file.
const RESTORE_POINT_NAME = /^[A-Za-z][A-Za-z0-9._-]{0,62}$/;

function takeValue(argv, i, flag) {
  const arg = argv[i];
  if (arg.includes('=')) return { value: arg.slice(arg.indexOf('=') + 1), next: i + 1 };
  if (i + 1 >= argv.length || argv[i + 1].startsWith('--')) throw new UsageError(`${flag} needs a value`);
  return { value: argv[i + 1], next: i + 2 };
}

/** `backup [--type full|diff|incr]` (default incr; pgBackRest makes the first one full anyway). */
function parseBackupArgs(argv) {
  let type = 'incr';
  for (let i = 0; i < argv.length;) {
    const flag = argv[i].split('=')[0];
    if (flag === '--type') {
      const { value, next } = takeValue(argv, i, '--type');
      if (!BACKUP_TYPES.includes(value)) throw new UsageError(`--type must be one of ${BACKUP_TYPES.join(', ')}; got "${value}"`);
      type = value;
      i = next;
    } else {
      throw new UsageError(`unknown argument "${argv[i]}"; usage: npm run stack -- backup [--type full|diff|incr]`);
    }
  }
  return { type };
}

function parseRestorePointArgs(argv) {
  if (argv.length !== 1) throw new UsageError('usage: npm run stack -- restore-point <name>');
  const name = argv[0];
  if (!RESTORE_POINT_NAME.test(name)) {
    throw new UsageError(`a restore point name starts with a letter and has up to 63 letters, digits, ".", "_" or "-"; got "${name}"`);
  }
  if (RFC3339.test(name)) throw new UsageError('a restore point name must not look like a time');
  return { name };
}

/**
 * `restore --to <RFC 3339 time | restore point> --stack-dir <new dir> [--replicas N] [--dry-run]`.
 * --replicas limits the replicas rebuilt per shard (default: all that the shard had).
 */
function parseRestoreArgs(argv) {
  const usage = 'usage: npm run stack -- restore --to <RFC 3339 time | restore point name> --stack-dir <new dir> [--replicas N] [--dry-run]';
  const out = { to: undefined, stackDir: undefined, replicas: undefined, dryRun: false };
  for (let i = 0; i < argv.length;) {
    const flag = argv[i].split('=')[0];
    if (flag === '--to' || flag === '--stack-dir' || flag === '--replicas') {
      const { value, next } = takeValue(argv, i, flag);
      if (value === '') throw new UsageError(`${flag} needs a value`);
      if (flag === '--to') out.to = value;
      else if (flag === '--stack-dir') out.stackDir = value;
      else {
        if (!/^\d+$/.test(value) || Number(value) > 7) throw new UsageError(`--replicas must be an integer from 0 to 7; got "${value}"`);
        out.replicas = Number(value);
      }
      i = next;
    } else if (argv[i] === '--dry-run') {
      out.dryRun = true;
      i += 1;
    } else {
      throw new UsageError(`unknown argument "${argv[i]}"; ${usage}`);
    }
  }
  if (!out.to) throw new UsageError(`--to is required; ${usage}`);
  if (!out.stackDir) throw new UsageError(`--stack-dir is required; ${usage}`);
  return out;
}

/**
 * A target: an RFC 3339 time (with an offset) or the name of a recorded restore point.
 * `restorePoints`: [{ name, at }] from the repository's restore-points journal.
 */
function parseTarget(to, restorePoints, now = new Date()) {
  const m = RFC3339.exec(to);
  if (m) {
    const at = new Date(to.replace(' ', 'T').replace(/t/, 'T').replace(/z$/, 'Z'));
    const [, y, mo, d, h, mi, s] = m.map(Number);
    if (Number.isNaN(at.getTime()) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) {
      throw new UsageError(`--to "${to}" is not a valid RFC 3339 time`);
    }
    void y;
    if (at.getTime() > now.getTime()) throw new TargetError(`target ${at.toISOString()} is in the future`);
    return { type: 'time', at, label: at.toISOString() };
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(to)) {
    throw new UsageError(`--to "${to}" is not an RFC 3339 time (e.g. 2026-12-02T09:15:00Z or 2026-12-02T10:15:00.250+01:00: the offset is required)`);
  }
  const point = restorePoints.find((p) => p.name === to);
  if (!point) {
    const known = restorePoints.map((p) => p.name);
    throw new TargetError(
      `no restore point named "${to}" in the repository${known.length ? ` (known: ${known.slice(-10).join(', ')})` : ' (none recorded yet)'}`,
    );
  }
  return { type: 'name', name: point.name, at: new Date(point.at), label: `restore point ${point.name} (${point.at})` };
}

/** The last topology document recorded at or before `at` (journal: [{ epoch, at, topology }]). */
function topologyAt(journal, at) {
  let best;
  for (const entry of journal) {
    const t = new Date(entry.at).getTime();
    if (t <= at.getTime() && (!best || entry.epoch > best.epoch)) best = entry;
  }
  return best;
}

/**
 * Checks a target against what the repository holds, before anything is restored.
 * shards: [{ id, backups: [{ label, type, start: Date, stop: Date }], lastArchivedCommit: Date | null }]
 * Returns { plan: [{ shard, backup }] } or throws TargetError naming the shard and the reason.
 *
 * - Recovery can only stop after the backup it starts from became consistent (its stop):
 *   a target inside the only usable backup is the "recovery stop point is before consistent
 *   recovery point" failure, so it is refused here with the backup's times. pgBackRest's
 *   timestamps have one-second resolution: a backup counts only from the second after its stop.
 * - PostgreSQL stops a time target at the first commit after it: with no archived commit
 *   after the target, recovery would end with "recovery ended before configured recovery
 *   target was reached". The local stack writes a heartbeat commit every few seconds on
 *   every primary, so "after the last archived commit" means "newer than the archived WAL".
 */
function checkTarget(target, shards) {
  const at = target.at.getTime();
  const plan = [];
  for (const shard of shards) {
    const backups = [...shard.backups].sort((a, b) => a.stop.getTime() - b.stop.getTime());
    if (backups.length === 0) throw new TargetError(`shard ${shard.id} has no backup; run npm run stack -- backup first`);
    const usable = backups.filter((b) => b.stop.getTime() + 1000 <= at);
    if (usable.length === 0) {
      const oldest = backups[0];
      if (at >= oldest.start.getTime()) {
        throw new TargetError(
          `target ${target.label} is inside backup ${oldest.label} of shard ${shard.id} (${oldest.start.toISOString()} .. ${oldest.stop.toISOString()}): ` +
            'recovery cannot stop before a backup is consistent ("recovery stop point is before consistent recovery point"); ' +
            `choose a target after ${new Date(oldest.stop.getTime() + 1000).toISOString()}`,
        );
      }
      throw new TargetError(
        `target ${target.label} is older than the oldest backup of shard ${shard.id} (${oldest.label}, finished ${oldest.stop.toISOString()}); ` +
          `the earliest restorable moment is ${new Date(oldest.stop.getTime() + 1000).toISOString()}`,
      );
    }
    if (!shard.lastArchivedCommit || shard.lastArchivedCommit.getTime() <= at) {
      throw new TargetError(
        `target ${target.label} is newer than the archived WAL of shard ${shard.id} ` +
          `(last archived commit: ${shard.lastArchivedCommit ? shard.lastArchivedCommit.toISOString() : 'none'}); ` +
          'WAL reaches the repository within archive_timeout (10 s) while the shard is written to: wait and retry, or choose an earlier target',
      );
    }
    plan.push({ shard: shard.id, backup: usable[usable.length - 1] });
  }
  return { plan };
}

/** The newest commit time in `pg_waldump` output (run with TZ=UTC), or null. */
function lastCommitFromWaldump(text) {
  let last = null;
  const re = /desc: COMMIT (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const t = new Date(`${m[1].replace(' ', 'T').replace(/(\.\d{3})\d+$/, '$1')}Z`);
    if (!last || t > last) last = t;
  }
  return last;
}

/** The WAL segment before `segment` (24 hex digits, 16 MB segments), or null at the start. */
function previousSegment(segment) {
  const tli = segment.slice(0, 8);
  let log = parseInt(segment.slice(8, 16), 16);
  let seg = parseInt(segment.slice(16, 24), 16);
  if (seg === 0) {
    if (log === 0) return null;
    log -= 1;
    seg = 0xff;
  } else seg -= 1;
  const hex = (n) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${tli}${hex(log)}${hex(seg)}`;
}

/** Node index from a stack node name (`s3n2` -> 2). */
function nodeIndex(name) {
  const m = /^s\d+n(\d+)$/.exec(name);
  if (!m) throw new RangeError(`not a stack node name: ${name}`);
  return Number(m[1]);
}

/**
 * The restored stack's shards from the topology at the target: the primary of that moment
 * first (the launcher builds missing replicas from a shard's first node), then up to
 * `replicas` of its replicas, each on PG_BASE_PORT + shard*8 + index of the new stack.
 * Returns { shards, topology } with the topology's node addresses moved to the new ports.
 */
function restoredLayout(topology, { pgBasePort, host = '127.0.0.1', replicas }) {
  const shards = topology.shards.map((shard) => {
    const members = [shard.primary, ...shard.replicas.slice(0, replicas === undefined ? shard.replicas.length : replicas)];
    return { id: shard.id, nodes: members.map((name) => ({ name, host, port: pgBasePort + shard.id * 8 + nodeIndex(name) })) };
  });
  const kept = new Set(shards.flatMap((s) => s.nodes.map((n) => n.name)));
  const nodes = shards.flatMap((s) => s.nodes);
  return {
    shards,
    topology: {
      ...topology,
      shards: topology.shards.map((shard) => ({ ...shard, replicas: shard.replicas.filter((name) => kept.has(name)) })),
      nodes: nodes.map(({ name, host: h, port }) => ({ name, host: h, port })),
    },
  };
}

function formatBytes(bytes) {
  if (bytes === undefined || bytes === null) return '-';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** A plain text table: header row, then rows; columns padded to their widest cell. */
function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells
      .map((c, i) => String(c).padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

module.exports = {
  UsageError,
  TargetError,
  BACKUP_TYPES,
  parseBackupArgs,
  parseRestorePointArgs,
  parseRestoreArgs,
  parseTarget,
  topologyAt,
  checkTarget,
  lastCommitFromWaldump,
  previousSegment,
  nodeIndex,
  restoredLayout,
  formatBytes,
  table,
};
