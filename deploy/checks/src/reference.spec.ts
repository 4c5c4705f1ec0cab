import { execFileSync } from 'node:child_process';
import { databaseRoles } from '@shortener/config';
import { problemFor, Topics, type DomainErrorKind } from '@shortener/contracts';
import { readRepoFile, repoRoot } from './files';

/**
 * docs/reference.md is the project's own statement of what it promises (the code cites it);
 * the parts that can be checked mechanically are checked here against the code.
 */
describe('docs/reference.md', () => {
  const reference = readRepoFile('docs', 'reference.md');
  const tracked = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: repoRoot, encoding: 'utf8' })
    .split('\n')
    .filter((path) => path && !path.startsWith('node_modules/'));
  const section = (n: number) => reference.split(/^## /m).find((part) => part.startsWith(`${n}. `)) ?? '';

  it('is what the repository cites: no file refers to a CONTRACT.md that is not part of it', () => {
    const citing = tracked.filter(
      (path) =>
        /\.(ts|mjs|cjs|js|md|ya?ml|sh|json)$/.test(path) && path !== 'deploy/checks/src/reference.spec.ts' && readRepoFile(path).includes('CONTRACT.md'),
    );
    expect(citing).toEqual([]);
  });

  it('names every Kafka topic of libs/contracts in its events table', () => {
    for (const topic of Object.values(Topics)) expect(section(4)).toContain(`| \`${topic}\``);
  });

  it('gives the status of every domain error the API can answer', () => {
    const kinds: DomainErrorKind[] = [
      'validation',
      'unauthorized',
      'forbidden',
      'not-found',
      'gone',
      'conflict',
      'idempotency-mismatch',
      'shard-unavailable',
      'dependency-unavailable',
      'outcome-unknown',
    ];
    for (const kind of kinds) expect(section(2)).toContain(`\`${problemFor(kind, '').status}\``);
  });

  it("lists every service's database role, and migration 3 makes each of them", () => {
    const migration = readRepoFile('libs/db/src/migrations/0003-service-roles.migration.ts');
    for (const role of Object.values(databaseRoles)) {
      expect(section(5)).toContain(`| \`${role}\``);
      expect(migration).toContain(`'${role}'`);
    }
  });

  it('names only metrics the code defines', () => {
    const sources = tracked.filter((path) => /^(apps|libs)\/.*\.ts$/.test(path) && !path.endsWith('.spec.ts')).map((path) => readRepoFile(path));
    for (const metric of new Set(reference.match(/shortener_[a-z_]+/g) ?? [])) {
      expect({ metric, defined: sources.some((text) => text.includes(`'${metric}'`)) }).toEqual({ metric, defined: true });
    }
  });
});
