const plan = require('./pgbackrest-plan.cjs');

const t = (iso: string) => new Date(iso);
const backup = (label: string, start: string, stop: string) => ({ label, type: 'full', start: t(start), stop: t(stop) });
const shard = (id: number, backups: ReturnType<typeof backup>[], lastArchivedCommit: string | null) => ({
  id,
  backups,
  lastArchivedCommit: lastArchivedCommit ? t(lastArchivedCommit) : null,
});

describe('backup command line', () => {
  it('defaults to an incremental backup and takes --type in both spellings', () => {
    expect(plan.parseBackupArgs([])).toEqual({ type: 'incr' });
    expect(plan.parseBackupArgs(['--type', 'full'])).toEqual({ type: 'full' });
    expect(plan.parseBackupArgs(['--type=diff'])).toEqual({ type: 'diff' });
  });

  it('refuses unknown types and arguments, naming them', () => {
    expect(() => plan.parseBackupArgs(['--type', 'weekly'])).toThrow(/--type must be one of full, diff, incr; got "weekly"/);
    expect(() => plan.parseBackupArgs(['--type'])).toThrow(/--type needs a value/);
    expect(() => plan.parseBackupArgs(['--fast'])).toThrow(plan.UsageError);
  });
});

describe('restore-point command line', () => {
  it('takes one safe name', () => {
    expect(plan.parseRestorePointArgs(['before-migration_3.1'])).toEqual({ name: 'before-migration_3.1' });
  });

  it('refuses no name, two names, unsafe names and names that look like times', () => {
    expect(() => plan.parseRestorePointArgs([])).toThrow(/usage/);
    expect(() => plan.parseRestorePointArgs(['a', 'b'])).toThrow(/usage/);
    expect(() => plan.parseRestorePointArgs(["x'; DROP"])).toThrow(/starts with a letter/);
    expect(() => plan.parseRestorePointArgs(['a'.repeat(64)])).toThrow(/up to 63/);
  });
});

describe('restore command line', () => {
  it('needs --to and --stack-dir, takes --replicas and --dry-run', () => {
    expect(plan.parseRestoreArgs(['--to', 'p1', '--stack-dir', '/tmp/r'])).toEqual({ to: 'p1', stackDir: '/tmp/r', replicas: undefined, dryRun: false });
    expect(plan.parseRestoreArgs(['--to=2026-12-02T08:00:00Z', '--stack-dir=/tmp/r', '--replicas', '0', '--dry-run'])).toEqual({
      to: '2026-12-02T08:00:00Z',
      stackDir: '/tmp/r',
      replicas: 0,
      dryRun: true,
    });
    expect(() => plan.parseRestoreArgs(['--stack-dir', '/tmp/r'])).toThrow(/--to is required/);
    expect(() => plan.parseRestoreArgs(['--to', 'p1'])).toThrow(/--stack-dir is required/);
    expect(() => plan.parseRestoreArgs(['--to', 'p1', '--stack-dir', '/tmp/r', '--replicas', 'two'])).toThrow(/--replicas must be an integer/);
    expect(() => plan.parseRestoreArgs(['--to', '--stack-dir', '/tmp/r'])).toThrow(/--to needs a value/);
  });
});

describe('restore targets', () => {
  const now = t('2026-12-02T09:00:00Z');
  const points = [{ name: 'before-c', at: '2026-12-02T08:30:00.000Z' }];

  it('reads RFC 3339 times with offsets and fractions', () => {
    expect(plan.parseTarget('2026-12-02T09:15:00.250+01:00', points, now)).toMatchObject({ type: 'time', at: t('2026-12-02T08:15:00.250Z') });
    expect(plan.parseTarget('2026-12-02 08:15:00Z', points, now).at).toEqual(t('2026-12-02T08:15:00Z'));
  });

  it('refuses a time without offset, an impossible time and a future time', () => {
    expect(() => plan.parseTarget('2026-12-02T08:15:00', points, now)).toThrow(/offset is required/);
    expect(() => plan.parseTarget('2026-13-02T08:15:00Z', points, now)).toThrow(/not a valid RFC 3339 time/);
    expect(() => plan.parseTarget('2026-12-02T09:00:01Z', points, now)).toThrow(/in the future/);
  });

  it('finds a recorded restore point by name and names the known ones otherwise', () => {
    expect(plan.parseTarget('before-c', points, now)).toMatchObject({ type: 'name', name: 'before-c', at: t('2026-12-02T08:30:00Z') });
    expect(() => plan.parseTarget('nope', points, now)).toThrow(/no restore point named "nope".*known: before-c/);
  });

  const backups = [backup('F1', '2026-12-02T08:00:00Z', '2026-12-02T08:00:05Z'), backup('I2', '2026-12-02T08:20:00Z', '2026-12-02T08:20:02Z')];

  it('plans each shard from the newest backup finished before the target', () => {
    const target = { type: 'time', at: t('2026-12-02T08:10:00Z'), label: 'x' };
    const { plan: steps } = plan.checkTarget(target, [shard(0, backups, '2026-12-02T08:40:00Z'), shard(1, backups.slice(0, 1), '2026-12-02T08:40:00Z')]);
    expect(steps.map((s: { shard: number; backup: { label: string } }) => [s.shard, s.backup.label])).toEqual([
      [0, 'F1'],
      [1, 'F1'],
    ]);
    const later = plan.checkTarget({ ...target, at: t('2026-12-02T08:30:00Z') }, [shard(0, backups, '2026-12-02T08:40:00Z')]);
    expect(later.plan[0].backup.label).toBe('I2');
  });

  it('refuses a target inside the oldest backup (recovery stop point before consistent recovery point)', () => {
    const inside = { type: 'time', at: t('2026-12-02T08:00:03Z'), label: 'inside' };
    expect(() => plan.checkTarget(inside, [shard(0, backups, '2026-12-02T08:40:00Z')])).toThrow(/inside backup F1 of shard 0.*consistent recovery point/);
    // one second after the stop is still inside: pgBackRest's times are whole seconds
    expect(() => plan.checkTarget({ ...inside, at: t('2026-12-02T08:00:05.500Z') }, [shard(0, backups, '2026-12-02T08:40:00Z')])).toThrow(plan.TargetError);
    expect(plan.checkTarget({ ...inside, at: t('2026-12-02T08:00:06Z') }, [shard(0, backups, '2026-12-02T08:40:00Z')]).plan).toHaveLength(1);
  });

  it('refuses a target older than the oldest backup, and a shard without backups', () => {
    const early = { type: 'time', at: t('2026-12-02T07:00:00Z'), label: 'early' };
    expect(() => plan.checkTarget(early, [shard(0, backups, '2026-12-02T08:40:00Z')])).toThrow(/older than the oldest backup of shard 0 \(F1/);
    expect(() => plan.checkTarget(early, [shard(3, [], null)])).toThrow(/shard 3 has no backup/);
  });

  it('refuses a target newer than the archived WAL of any shard, naming it', () => {
    const target = { type: 'time', at: t('2026-12-02T08:39:00Z'), label: 'late' };
    expect(() => plan.checkTarget(target, [shard(0, backups, '2026-12-02T08:40:00Z'), shard(1, backups, '2026-12-02T08:38:59Z')])).toThrow(
      /newer than the archived WAL of shard 1 \(last archived commit: 2026-12-02T08:38:59.000Z\)/,
    );
    expect(() => plan.checkTarget(target, [shard(0, backups, null)])).toThrow(/last archived commit: none/);
  });
});

describe('topology at a moment', () => {
  const journal = [
    { epoch: 1, at: '2026-12-02T08:00:00Z', topology: { epoch: 1 } },
    { epoch: 3, at: '2026-12-02T08:20:00Z', topology: { epoch: 3 } },
    { epoch: 2, at: '2026-12-02T08:10:00Z', topology: { epoch: 2 } },
  ];

  it('is the newest epoch recorded at or before it', () => {
    expect(plan.topologyAt(journal, t('2026-12-02T08:15:00Z')).epoch).toBe(2);
    expect(plan.topologyAt(journal, t('2026-12-02T08:20:00Z')).epoch).toBe(3);
    expect(plan.topologyAt(journal, t('2026-12-02T07:59:59Z'))).toBeUndefined();
  });

  it('lays the restored stack out with the primary of that moment first, on the new ports', () => {
    const topology = {
      epoch: 7,
      shards: [
        { id: 0, primary: 's0n1', replicas: ['s0n2', 's0n0'] },
        { id: 2, primary: 's2n0', replicas: ['s2n1'] },
      ],
      nodes: [],
    };
    const all = plan.restoredLayout(topology, { pgBasePort: 17500 });
    expect(all.shards[0].nodes.map((n: { name: string; port: number }) => `${n.name}:${n.port}`)).toEqual(['s0n1:17501', 's0n2:17502', 's0n0:17500']);
    expect(all.topology.nodes).toHaveLength(5);
    const small = plan.restoredLayout(topology, { pgBasePort: 17500, replicas: 0 });
    expect(small.shards[1].nodes).toEqual([{ name: 's2n0', host: '127.0.0.1', port: 17516 }]);
    expect(small.topology.shards[0]).toEqual({ id: 0, primary: 's0n1', replicas: [] });
    expect(small.topology.nodes.map((n: { name: string }) => n.name)).toEqual(['s0n1', 's2n0']);
  });
});

describe('WAL helpers', () => {
  it('finds the newest commit time in pg_waldump output', () => {
    const dump = [
      'rmgr: Transaction len (rec/tot):     34/    34, tx:        746, lsn: 0/0301A3B0, prev 0/0301A378, desc: COMMIT 2026-12-02 08:01:02.123456 UTC',
      'rmgr: Standby     len (rec/tot):     50/    50, tx:          0, lsn: 0/0301A3D8, prev 0/0301A3B0, desc: RUNNING_XACTS nextXid 747',
      'rmgr: Transaction len (rec/tot):     34/    34, tx:        747, lsn: 0/0301A410, prev 0/0301A3D8, desc: COMMIT 2026-12-02 08:01:04.5 UTC',
    ].join('\n');
    expect(plan.lastCommitFromWaldump(dump)).toEqual(t('2026-12-02T08:01:04.500Z'));
    expect(plan.lastCommitFromWaldump('desc: CHECKPOINT_ONLINE redo 0/2000028')).toBeNull();
  });

  it('steps back one segment across a log boundary', () => {
    expect(plan.previousSegment('000000020000000100000000')).toBe('0000000200000000000000FF');
    expect(plan.previousSegment('00000001000000000000000A')).toBe('000000010000000000000009');
    expect(plan.previousSegment('000000010000000000000000')).toBeNull();
  });
});
