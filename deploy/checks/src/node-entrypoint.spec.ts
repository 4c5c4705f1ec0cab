import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoPath } from './files';

// Generous: CI runs these beside builds and a whole stack on two cores.
jest.setTimeout(120_000);

/**
 * The decisions of docker/postgres/node-entrypoint.sh, run for real with bash but with
 * stand-ins for the PostgreSQL tools (psql answers pg_is_in_recovery() from FAKE_ROLES,
 * pg_basebackup / pg_rewind / docker-entrypoint.sh record their calls).
 */
describe('docker/postgres/node-entrypoint.sh', () => {
  let work: string;
  let bin: string;
  let calls: string;

  const stub = (name: string, body: string) => {
    const file = join(bin, name);
    writeFileSync(file, `#!/usr/bin/env bash\n${body}\n`);
    chmodSync(file, 0o755);
  };

  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'node-entrypoint-'));
    bin = join(work, 'bin');
    calls = join(work, 'calls.log');
    mkdirSync(bin);
    // Not root: the script's drop to the postgres user (gosu) is the image's business.
    stub('id', 'echo 999');
    stub(
      'psql',
      `host=""; sql=""
while [ $# -gt 0 ]; do case "$1" in -h) host="$2"; shift 2;; -XtAc|-c) sql="$2"; shift 2;; *) shift;; esac; done
if [[ "$sql" == *pg_is_in_recovery* ]]; then
  count=$(( $(cat "$CALLS.count" 2>/dev/null || echo 0) + 1 )); echo "$count" >"$CALLS.count"
  if [ -n "\${FAKE_PROMOTED:-}" ] && [ "$host" = "$FAKE_PROMOTED" ] && [ "$count" -gt "\${FAKE_PROMOTE_AFTER:-0}" ]; then echo f; exit 0; fi
  for entry in $FAKE_ROLES; do [ "\${entry%%=*}" = "$host" ] && { echo "\${entry#*=}"; exit 0; }; done
  exit 2
fi
echo "psql $host $sql" >>"$CALLS"`,
    );
    stub(
      'pg_basebackup',
      `echo "pg_basebackup $*" >>"$CALLS"
while [ $# -gt 0 ]; do case "$1" in -D) dir="$2"; shift 2;; *) shift;; esac; done
mkdir -p "$dir"; echo 15 >"$dir/PG_VERSION"; echo "primary_conninfo = 'from-basebackup'" >"$dir/postgresql.auto.conf"; touch "$dir/standby.signal"`,
    );
    stub('pg_rewind', 'echo "pg_rewind $*" >>"$CALLS"');
    stub('postgres', 'echo "postgres $*" >>"$CALLS"');
    // the stanza only when a repository is configured, so that the other cases read as before
    stub('docker-entrypoint.sh', 'echo "start $*${PGBACKREST_REPO1_PATH:+ stanza=$PGBACKREST_STANZA}" >>"$CALLS"');
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  const run = (hostname: string, roles: Record<string, 't' | 'f'>, setup?: (pgdata: string) => void, extra: Record<string, string> = {}) => {
    const pgdata = join(work, 'pgdata');
    mkdirSync(pgdata, { recursive: true });
    setup?.(pgdata);
    const result = spawnSync('bash', [repoPath('docker/postgres/node-entrypoint.sh'), 'postgres'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: {
        PATH: `${bin}:${process.env.PATH ?? ''}`,
        PG_HOSTNAME: hostname,
        PGDATA: pgdata,
        // The demoted-primary watch runs beside PostgreSQL for the container's life; the start-up is what is checked here.
        PG_DEMOTION_WATCH: 'off',
        POSTGRES_PASSWORD: 'secret',
        CALLS: calls,
        FAKE_ROLES: Object.entries(roles)
          .map(([host, role]) => `${host}=${role}`)
          .join(' '),
        PG_PROMOTION_WAIT_SECONDS: '0',
        ...extra,
      },
    });
    const log = existsSync(calls) ? readFileSync(calls, 'utf8') : '';
    const autoConf = existsSync(join(pgdata, 'postgresql.auto.conf')) ? readFileSync(join(pgdata, 'postgresql.auto.conf'), 'utf8') : '';
    return {
      status: result.status,
      stderr: result.stderr,
      log,
      autoConf,
      standby: existsSync(join(pgdata, 'standby.signal')),
    };
  };
  const primaryData = (pgdata: string) => {
    writeFileSync(join(pgdata, 'PG_VERSION'), '15');
    writeFileSync(join(pgdata, 'postgresql.auto.conf'), "synchronous_standby_names = 'ANY 1 (s0n0, s0n1, s0n2)'\n");
  };

  it('initialises index 0 when no peer is a primary', () => {
    const result = run('s0n0', {});
    expect(result.status).toBe(0);
    expect(result.log.trim()).toBe('start postgres');
    expect(result.stderr).toMatch(/initialising the shard's first primary/);
  });

  it('clones a replica from the primary with its own slot and application_name', () => {
    const result = run('s0n2', { s0n0: 'f', s0n1: 't' });
    expect(result.status).toBe(0);
    expect(result.log).toMatch(
      /pg_basebackup -D \S+ -X stream -R -C -S s0n2 -c fast -d host=s0n0 port=5432 user=postgres password=secret application_name=s0n2/,
    );
    expect(result.autoConf).not.toContain('from-basebackup');
    expect(result.autoConf).toContain("primary_conninfo = 'host=s0n0 port=5432 user=postgres password=secret application_name=s0n2'");
    expect(result.autoConf).toContain("primary_slot_name = 's0n2'");
    expect(result.standby).toBe(true);
    expect(result.log.trim().split('\n').pop()).toBe('start postgres');
  });

  it('rewinds a failed-over primary from the new primary and starts it as a replica', () => {
    const result = run('s0n0', { s0n1: 'f', s0n2: 't' }, primaryData);
    expect(result.status).toBe(0);
    expect(result.log).toMatch(/pg_rewind -D \S+ -R --source-server=host=s0n1 port=5432 user=postgres password=secret application_name=s0n0 dbname=postgres/);
    expect(result.log).toMatch(/psql s0n1 SELECT pg_create_physical_replication_slot\('s0n0', true\)/);
    expect(result.autoConf).toContain("primary_conninfo = 'host=s0n1 port=5432 user=postgres password=secret application_name=s0n0'");
    expect(result.standby).toBe(true);
  });

  it("archives WAL through pgBackRest under the shard's stanza when a repository is configured, and not without one", () => {
    const archiving = run('s2n1', { s2n0: 't', s2n2: 't' }, primaryData, { PGBACKREST_REPO1_PATH: '/var/lib/pgbackrest' });
    expect(archiving.status).toBe(0);
    expect(archiving.log.trim()).toBe('start postgres -c archive_mode=on -c archive_command=pgbackrest archive-push %p -c archive_timeout=60s stanza=shard-2');
    const plain = run('s2n1', { s2n0: 't', s2n2: 't' }, primaryData);
    expect(plain.log.trim().split('\n').pop()).toBe('start postgres');
  });

  it('starts a former primary as the primary again when no peer was promoted', () => {
    const result = run('s0n0', { s0n1: 't', s0n2: 't' }, primaryData);
    expect(result.status).toBe(0);
    expect(result.log).not.toMatch(/pg_rewind|pg_basebackup/);
    expect(result.standby).toBe(false);
    expect(result.log.trim()).toBe('start postgres');
  });

  it('waits for a promotion when a fenced primary restarts before its replica is promoted', () => {
    const result = run('s0n0', { s0n1: 't', s0n2: 't' }, primaryData, {
      PG_PROMOTION_WAIT_SECONDS: '20',
      FAKE_PROMOTED: 's0n1',
      FAKE_PROMOTE_AFTER: '6',
    });
    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/waiting for a promotion/);
    expect(result.log).toMatch(/pg_rewind .*--source-server=host=s0n1 /);
    expect(result.standby).toBe(true);
  });

  it('derives peers from a StatefulSet pod name in Kubernetes', () => {
    const result = run('pg-s2-1', { 'pg-s2-0.pg-s2': 'f' });
    expect(result.status).toBe(0);
    expect(result.log).toMatch(/-S s2n1 .*host=pg-s2-0\.pg-s2 .*application_name=s2n1/);
  });
});
