// node --test: the backup commands' decisions (backup-plan.mjs). Run by npm test's unit phase.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  UsageError,
  backupsTable,
  chooseBackup,
  parseBackupArgs,
  parseRestoreArgs,
  parseRestorePointArgs,
  parseTarget,
  postgresTime,
  recoveryFailure,
  repositorySpaceProblem,
  restoreTargetOptions,
} from './backup-plan.mjs';

const NOW = new Date('2026-12-03T12:00:00Z');
const at = (iso) => new Date(iso).getTime() / 1000;
const backup = (label, type, start, stop, extra = {}) => ({
  label,
  type,
  error: false,
  timestamp: { start: at(start), stop: at(stop) },
  info: { size: 30 * 1024 * 1024, repository: { size: 6 * 1024 * 1024, delta: 6 * 1024 * 1024 } },
  archive: { start: '000000010000000000000008', stop: '000000010000000000000009' },
  ...extra,
});
const BACKUPS = [
  backup('20261203-100000F', 'full', '2026-12-03T10:00:00Z', '2026-12-03T10:00:30Z'),
  backup('20261203-100000F_20261203-110000I', 'incr', '2026-12-03T11:00:00Z', '2026-12-03T11:00:10Z'),
  backup('20261203-113000F', 'full', '2026-12-03T11:30:00Z', '2026-12-03T11:31:00Z', { error: true }),
];

test('backup: --type full|diff|incr, pgBackRest default incr, anything else refused', () => {
  assert.deepEqual(parseBackupArgs([]), { type: 'incr' });
  assert.deepEqual(parseBackupArgs(['--type', 'full']), { type: 'full' });
  assert.deepEqual(parseBackupArgs(['--type=diff']), { type: 'diff' });
  assert.throws(() => parseBackupArgs(['--type', 'weekly']), /--type must be full, diff or incr; got "weekly"/);
  assert.throws(() => parseBackupArgs(['--type']), /--type needs a value/);
  assert.throws(() => parseBackupArgs(['--type', 'full', '--type', 'incr']), /given twice/);
  assert.throws(() => parseBackupArgs(['--kind', 'full']), /unknown option --kind/);
  assert.throws(() => parseBackupArgs(['full']), /unexpected argument "full"/);
});

test('restore: --to and --stack-dir are both required, in either form', () => {
  assert.deepEqual(parseRestoreArgs(['--to', 'before-deploy', '--stack-dir', '/tmp/r']), { to: 'before-deploy', stackDir: '/tmp/r' });
  assert.deepEqual(parseRestoreArgs(['--stack-dir=/tmp/r', '--to=2026-12-03T10:00:00Z']), { to: '2026-12-03T10:00:00Z', stackDir: '/tmp/r' });
  assert.throws(() => parseRestoreArgs(['--stack-dir', '/tmp/r']), /--to is required/);
  assert.throws(() => parseRestoreArgs(['--to', 'x']), /--stack-dir is required/);
  assert.throws(() => parseRestoreArgs(['--to', '--stack-dir', '/tmp/r']), /--to needs a value/);
});

test('restore-point: a name PostgreSQL and a shell take as it is, never one that reads as another target', () => {
  assert.deepEqual(parseRestorePointArgs(['before-deploy_2.1']), { name: 'before-deploy_2.1' });
  for (const bad of ['', '-x', 'a b', "it's", 'x'.repeat(64), 'latest', '2026-12-03T10:00:00Z']) {
    assert.throws(() => parseRestorePointArgs([bad]), UsageError, bad);
  }
  assert.throws(() => parseRestorePointArgs([]), /usage: restore-point <name>/);
  assert.throws(() => parseRestorePointArgs(['a', 'b']), /usage/);
});

test('a target is an RFC 3339 time with its zone, latest, or a recorded restore point', () => {
  assert.deepEqual(parseTarget('latest', [], NOW), { kind: 'latest' });
  assert.equal(parseTarget('2026-12-03T10:15:00Z', [], NOW).time.toISOString(), '2026-12-03T10:15:00.000Z');
  assert.equal(parseTarget('2026-12-03T11:15:00.250+01:00', [], NOW).time.toISOString(), '2026-12-03T10:15:00.250Z');
  const points = [{ name: 'before-deploy', time: '2026-12-03T10:20:00.000Z' }];
  assert.deepEqual(parseTarget('before-deploy', points, NOW), { kind: 'name', name: 'before-deploy', time: new Date('2026-12-03T10:20:00Z') });
  assert.throws(() => parseTarget('2026-12-03T10:15:00', [], NOW), /not an RFC 3339 time/); // no zone: whose 10:15?
  assert.throws(() => parseTarget('2026-02-30T10:00:00Z', [], NOW), /not a valid time/);
  assert.throws(() => parseTarget('2026-12-03T12:00:01Z', [], NOW), /is in the future/);
  assert.throws(() => parseTarget('after-deploy', points, NOW), /no restore point named "after-deploy" in this repository \(known: before-deploy\)/);
  assert.throws(() => parseTarget('x', [], NOW), /\(none recorded\)/);
});

test('each shard restores from the newest backup that ended before the target, never a failed one', () => {
  const time = (iso) => ({ kind: 'time', time: new Date(iso) });
  assert.equal(chooseBackup('shard-0', BACKUPS, time('2026-12-03T10:30:00Z')).label, '20261203-100000F');
  assert.equal(chooseBackup('shard-0', BACKUPS, time('2026-12-03T11:00:10Z')).label, '20261203-100000F_20261203-110000I');
  // the errored full backup after it is never chosen
  assert.equal(chooseBackup('shard-0', BACKUPS, time('2026-12-03T11:59:00Z')).label, '20261203-100000F_20261203-110000I');
  assert.equal(chooseBackup('shard-0', BACKUPS, { kind: 'latest' }).label, '20261203-100000F_20261203-110000I');
  // inside the oldest backup: "recovery stop point is before consistent recovery point", refused up front
  assert.throws(
    () => chooseBackup('shard-0', BACKUPS, time('2026-12-03T10:00:15Z')),
    /older than the oldest backup of shard-0 \(it ended 2026-12-03T10:00:30.000Z\)/,
  );
  assert.throws(() => chooseBackup('shard-1', [], time('2026-12-03T10:30:00Z')), /shard-1 has no backup/);
});

test('restore options name the target as PostgreSQL 15 parses it', () => {
  assert.equal(postgresTime(new Date('2026-12-03T10:15:00.250Z')), '2026-12-03 10:15:00.250+00');
  assert.deepEqual(restoreTargetOptions({ kind: 'time', time: new Date('2026-12-03T10:15:00Z') }), [
    '--type=time',
    '--target=2026-12-03 10:15:00.000+00',
    '--target-action=promote',
  ]);
  assert.deepEqual(restoreTargetOptions({ kind: 'name', name: 'p1', time: NOW }), ['--type=name', '--target=p1', '--target-action=promote']);
  assert.deepEqual(restoreTargetOptions({ kind: 'latest' }), ['--type=default']);
});

test('a recovery PostgreSQL ended is explained in the operator’s words', () => {
  assert.match(
    recoveryFailure('shard-2', 'LOG: x\nFATAL:  recovery ended before configured recovery target was reached\n'),
    /shard-2: the target is newer than the WAL archived/,
  );
  assert.match(
    recoveryFailure('shard-0', 'FATAL:  could not locate required checkpoint record\n'),
    /shard-0: recovery failed: FATAL: {2}could not locate required checkpoint record/,
  );
});

test('backups prints one row per backup of each shard, in shard order', () => {
  const table = backupsTable([
    { name: 'shard-10', backup: [] },
    { name: 'shard-2', backup: [BACKUPS[0]] },
  ]).split('\n');
  assert.match(table[0], /^shard\s+label\s+type\s+start\s+stop\s+size\s+repo size\s+WAL start\s+WAL stop$/);
  assert.match(
    table[1],
    /^shard-2\s+20261203-100000F\s+full\s+2026-12-03T10:00:00.000Z\s+2026-12-03T10:00:30.000Z\s+30.0 MB\s+6.0 MB\s+000000010000000000000008\s+000000010000000000000009$/,
  );
  assert.match(table[2], /^shard-10\s+\(no backup\)$/);
});

test('a backup that the repository disk cannot hold is refused before it starts', () => {
  const MB = 1024 * 1024;
  const infos = [
    { name: 'shard-0', backup: [BACKUPS[0]] },
    { name: 'shard-1', backup: [] },
  ];
  // full: 6 MB (shard-0's last full) + 64 MB (shard-1's first), times 1.5 = 105 MB
  assert.equal(repositorySpaceProblem(200 * MB, infos, 'full'), null);
  assert.match(repositorySpaceProblem(100 * MB, infos, 'full'), /has 100 MB free; a full backup of 2 shards needs about 105 MB/);
  // incremental: a quarter of shard-0's full, shard-1 still needs a whole first one
  assert.equal(repositorySpaceProblem(100 * MB, infos, 'incr'), null);
  assert.match(repositorySpaceProblem(10 * MB, infos, 'incr'), /needs about 98 MB/);
});
