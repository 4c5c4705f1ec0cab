// The decisions of the backup commands, without effects (unit-tested in backup-plan.test.mjs):
// their command lines, what a restore target means, which backup each shard restores from,
// and the tables they print. Node built-ins only.

export class UsageError extends Error {}

export const BACKUP_TYPES = ['full', 'diff', 'incr'];

/** RFC 3339 with a time zone (Z or ±hh:mm), seconds required, fractions allowed. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** What pg_create_restore_point accepts (at most 63 bytes), kept to characters a shell never needs quoted. */
const RESTORE_POINT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** `--name value` and `--name=value` options, nothing else; unknown or repeated ones are refused. */
function options(argv, allowed, command) {
  const values = {};
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2);
    if (!allowed.includes(name)) throw new UsageError(`${command}: unknown option --${name} (options: ${allowed.map((a) => `--${a}`).join(' ')})`);
    if (name in values) throw new UsageError(`${command}: --${name} given twice`);
    const value = inline !== undefined ? inline : argv[++i];
    if (value === undefined || value === '' || (inline === undefined && value.startsWith('--'))) throw new UsageError(`${command}: --${name} needs a value`);
    values[name] = value;
  }
  return { values, positional };
}

/** `backup [--type full|diff|incr]`; pgBackRest's own default (incr, a full one when there is none). */
export function parseBackupArgs(argv) {
  const { values, positional } = options(argv, ['type'], 'backup');
  if (positional.length > 0) throw new UsageError(`backup: unexpected argument "${positional[0]}" (usage: backup [--type full|diff|incr])`);
  const type = values.type ?? 'incr';
  if (!BACKUP_TYPES.includes(type)) throw new UsageError(`backup: --type must be full, diff or incr; got "${type}"`);
  return { type };
}

export function parseRestorePointArgs(argv) {
  const { positional } = options(argv, [], 'restore-point');
  if (positional.length !== 1) throw new UsageError('usage: restore-point <name>');
  const [name] = positional;
  if (!RESTORE_POINT_NAME.test(name)) {
    throw new UsageError(`restore-point: "${name}" is not a usable name (1 to 63 letters, digits, "_", "." or "-", starting with a letter or digit)`);
  }
  if (name === 'latest' || RFC3339.test(name)) throw new UsageError(`restore-point: "${name}" would read as a restore target of another kind`);
  return { name };
}

/** `restore --to <RFC 3339 time | restore point | latest> --stack-dir <new dir>` */
export function parseRestoreArgs(argv) {
  const { values, positional } = options(argv, ['to', 'stack-dir'], 'restore');
  if (positional.length > 0) throw new UsageError(`restore: unexpected argument "${positional[0]}"`);
  const usage = 'usage: restore --to <RFC 3339 time | restore point name | latest> --stack-dir <new directory>';
  if (!values.to) throw new UsageError(`restore: --to is required (${usage})`);
  if (!values['stack-dir']) throw new UsageError(`restore: --stack-dir is required (${usage})`);
  return { to: values.to, stackDir: values['stack-dir'] };
}

/**
 * What `--to` names: a time (RFC 3339, with its zone), `latest` (all archived WAL), or a
 * restore point this repository recorded (restore-points.json), whose time is known too.
 */
export function parseTarget(to, restorePoints = [], now = new Date()) {
  if (to === 'latest') return { kind: 'latest' };
  const match = RFC3339.exec(to);
  if (match) {
    const [, y, mo, d, h, mi, s] = match.map(Number);
    const time = new Date(to.replace(' ', 'T'));
    // Date would roll 2026-02-30 over to March: the fields must survive the round trip.
    const utcCheck = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
    if (Number.isNaN(time.getTime()) || utcCheck.getUTCMonth() !== mo - 1 || utcCheck.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) {
      throw new UsageError(`restore: --to "${to}" is not a valid time`);
    }
    if (time.getTime() > now.getTime()) {
      throw new UsageError(`restore: --to ${time.toISOString()} is in the future (now ${now.toISOString()}): no archived WAL reaches it`);
    }
    return { kind: 'time', time };
  }
  const point = restorePoints.find((p) => p.name === to);
  if (point) return { kind: 'name', name: point.name, time: new Date(point.time) };
  if (/^\d{4}-\d{2}-\d{2}/.test(to)) throw new UsageError(`restore: --to "${to}" is not an RFC 3339 time (for example 2026-12-03T10:15:00Z)`);
  const known = restorePoints.map((p) => p.name);
  throw new UsageError(`restore: no restore point named "${to}" in this repository${known.length ? ` (known: ${known.join(', ')})` : ' (none recorded)'}`);
}

/**
 * The backup a shard restores from: the newest one that ended before the target. One that
 * ended after it could not stop there ("recovery stop point is before consistent recovery
 * point"); a target before the end of the oldest backup has nothing to restore from.
 */
export function chooseBackup(stanza, backups, target) {
  const usable = backups.filter((backup) => !backup.error).sort((a, b) => a.timestamp.stop - b.timestamp.stop);
  if (usable.length === 0) throw new UsageError(`restore: ${stanza} has no backup; run npm run stack -- backup first`);
  if (target.kind === 'latest') return usable[usable.length - 1];
  const targetSeconds = target.time.getTime() / 1000;
  const before = usable.filter((backup) => backup.timestamp.stop <= targetSeconds);
  if (before.length === 0) {
    const oldest = new Date(usable[0].timestamp.stop * 1000).toISOString();
    throw new UsageError(
      `restore: the target ${target.time.toISOString()} is older than the oldest backup of ${stanza} (it ended ${oldest}); nothing can be restored to that moment`,
    );
  }
  return before[before.length - 1];
}

/** pgbackrest restore options for a target. */
export function restoreTargetOptions(target) {
  if (target.kind === 'latest') return ['--type=default'];
  if (target.kind === 'name') return ['--type=name', `--target=${target.name}`, '--target-action=promote'];
  return ['--type=time', `--target=${postgresTime(target.time)}`, '--target-action=promote'];
}

/** recovery_target_time as PostgreSQL 15 parses it (it refuses ISO 8601's "T...Z" form). */
export function postgresTime(time) {
  return `${time.toISOString().replace('T', ' ').replace('Z', '')}+00`;
}

function megabytes(bytes) {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** `backups`: shard, type, start, stop, size (database and in the repository), WAL range. */
export function backupsTable(infos) {
  const rows = [['shard', 'label', 'type', 'start', 'stop', 'size', 'repo size', 'WAL start', 'WAL stop']];
  for (const stanza of [...infos].sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }))) {
    if (stanza.backup.length === 0) rows.push([stanza.name, '(no backup)', '', '', '', '', '', '', '']);
    for (const backup of stanza.backup) {
      rows.push([
        stanza.name,
        backup.label,
        backup.error ? `${backup.type} (error)` : backup.type,
        new Date(backup.timestamp.start * 1000).toISOString(),
        new Date(backup.timestamp.stop * 1000).toISOString(),
        megabytes(backup.info.size),
        megabytes(backup.info.repository.delta ?? backup.info.repository.size),
        backup.archive.start,
        backup.archive.stop,
      ]);
    }
  }
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Why a recovery that PostgreSQL ended by itself stopped, from its log, in the operator's words. */
export function recoveryFailure(stanza, logText) {
  if (/recovery ended before configured recovery target was reached/.test(logText)) {
    return `${stanza}: the target is newer than the WAL archived from that shard (recovery reached the end of the archive first); choose an earlier target, or check that archiving works (pgbackrest check)`;
  }
  if (
    /recovery stop point .* is before consistent recovery point/i.test(logText) ||
    /requested recovery stop point is before consistent recovery point/.test(logText)
  ) {
    return `${stanza}: the target lies inside the backup chosen (before its consistent point); choose a later target`;
  }
  const fatal = logText.split('\n').filter((line) => /FATAL|PANIC/.test(line));
  return `${stanza}: recovery failed${fatal.length ? `: ${fatal[fatal.length - 1].trim()}` : ''}`;
}

/**
 * Whether the repository's file system can take the backup about to start: a full
 * backup writes about what the newest full backup of each shard wrote (a first one: a
 * third of the data, what lz4 leaves of it), a differential or incremental one a part of
 * that; with a margin, since WAL keeps arriving meanwhile. A full repository disk would
 * otherwise fail halfway through, and stop WAL archiving with it.
 */
export function repositorySpaceProblem(freeBytes, infos, type, { firstBackupBytesPerShard = 64 * 1024 * 1024 } = {}) {
  let needed = 0;
  for (const stanza of infos) {
    const fulls = stanza.backup.filter((backup) => backup.type === 'full' && !backup.error);
    const last = fulls[fulls.length - 1];
    const fullBytes = last ? last.info.repository.size : firstBackupBytesPerShard;
    needed += type === 'full' || !last ? fullBytes : fullBytes / 4;
  }
  const wanted = Math.ceil(needed * 1.5);
  if (freeBytes >= wanted) return null;
  const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
  return `the repository's disk has ${mb(freeBytes)} free; a ${type} backup of ${infos.length} shards needs about ${mb(wanted)} (with WAL arriving meanwhile): free space or move the repository before backing up`;
}
