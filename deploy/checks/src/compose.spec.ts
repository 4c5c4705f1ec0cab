import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { commandOf, composeFile, interpolate, loadCompose, validateCompose, type ComposeDocument } from './compose';
import { Topics } from '@shortener/contracts';
import { clone, repoPath } from './files';

// Generous: CI runs these beside builds and a whole stack on two cores.
jest.setTimeout(120_000);

describe('docker/compose.yaml', () => {
  const compose = loadCompose();
  const services = Object.entries(compose.services);

  it('is valid against the Compose Specification schema', () => {
    expect(validateCompose(compose)).toEqual([]);
  });

  it('is rejected by the schema when broken', () => {
    const misspelt = clone(compose) as ComposeDocument;
    (misspelt.services.writer as Record<string, unknown>).helthcheck = misspelt.services.writer.healthcheck;
    expect(validateCompose(misspelt).join('\n')).toMatch(/helthcheck/);

    const badCondition = clone(compose) as ComposeDocument;
    badCondition.services.gateway.depends_on = { writer: { condition: 'healthy' } };
    expect(validateCompose(badCondition).join('\n')).toMatch(/depends_on/);

    const badDuration = clone(compose) as ComposeDocument;
    (badDuration.services['redis-0'].healthcheck as Record<string, unknown>).interval = 'five seconds';
    expect(validateCompose(badDuration).join('\n')).toMatch(/interval/);
  });

  it('only the gateway publishes a port', () => {
    const publishing = services.filter(([, service]) => (service.ports ?? []).length > 0).map(([name]) => name);
    expect(publishing).toEqual(['gateway']);
  });

  it('depends_on names existing services with conditions they can meet', () => {
    for (const [name, service] of services) {
      for (const [dependency, { condition }] of Object.entries((service.depends_on ?? {}) as Record<string, { condition: string }>)) {
        const target = compose.services[dependency];
        expect({ name, dependency, exists: Boolean(target) }).toEqual({
          name,
          dependency,
          exists: true,
        });
        if (condition === 'service_healthy')
          expect({ dependency, healthcheck: Boolean(target.healthcheck) }).toEqual({
            dependency,
            healthcheck: true,
          });
        if (condition === 'service_completed_successfully') expect({ dependency, restart: target.restart }).toEqual({ dependency, restart: 'no' });
      }
    }
  });

  it('gives every long-running service a health check and a restart policy', () => {
    for (const [name, service] of services) {
      if (service.restart === 'no') continue;
      expect({ name, healthcheck: Boolean(service.healthcheck), restart: service.restart }).toEqual({ name, healthcheck: true, restart: 'unless-stopped' });
    }
  });

  it('declares every named volume it mounts, and mounts files that exist', () => {
    for (const [name, service] of services) {
      for (const volume of service.volumes ?? []) {
        const source = typeof volume === 'string' ? volume.split(':')[0] : String(volume.source);
        if (source.startsWith('.'))
          expect({ name, source, exists: existsSync(join(repoPath('docker'), source)) }).toEqual({
            name,
            source,
            exists: true,
          });
        else
          expect({ name, source, declared: source in (compose.volumes ?? {}) }).toEqual({
            name,
            source,
            declared: true,
          });
      }
    }
  });

  it('runs the PostgreSQL nodes from the official image plus pgBackRest, with the shared entrypoint and backup repository', () => {
    const nodes = services.filter(([, service]) => service.image?.startsWith('shortener/postgres:'));
    expect(nodes).toHaveLength(12);
    for (const [name, service] of nodes) {
      expect(service.image).toBe('shortener/postgres:${TAG:-local}');
      expect(service.build).toEqual({ context: './postgres', args: { POSTGRES_IMAGE: '${POSTGRES_IMAGE:-postgres:15}' } });
      expect(service.environment).toMatchObject({ PGBACKREST_REPO1_PATH: '/var/lib/pgbackrest', PGBACKREST_PG1_PATH: '/var/lib/postgresql/data' });
      expect(service.volumes).toContain('pgbackrest:/var/lib/pgbackrest');
      expect(service.hostname).toBe(name);
      expect(service.entrypoint).toEqual(['bash', '/opt/shortener/node-entrypoint.sh']);
      expect(service.volumes).toEqual(
        expect.arrayContaining(['./postgres/node-entrypoint.sh:/opt/shortener/node-entrypoint.sh:ro', './postgres/initdb:/docker-entrypoint-initdb.d:ro']),
      );
      const index = Number(/n(\d+)$/.exec(name)![1]);
      if (index > 0)
        expect(service.depends_on).toEqual({
          [name.replace(/n\d+$/, 'n0')]: { condition: 'service_healthy' },
        });
    }
  });

  it('creates the Kafka topics of the contract in a one-shot service', () => {
    const script = commandOf(compose.services['kafka-init']).join('\n');
    expect(script).toMatch(/--topic url\.events --partitions 6/);
    expect(script).toMatch(/--topic url\.clicks --partitions 6/);
    expect(script).toMatch(/--topic cluster\.topology --partitions 1 .*cleanup\.policy=compact/);
    for (const topic of Object.values(Topics)) expect(script).toContain(`--topic ${topic} `);
    expect(compose.services.kafka.environment).toMatchObject({
      KAFKA_PROCESS_ROLES: 'broker,controller',
    });
  });

  it('interpolates like docker compose', () => {
    expect(interpolate('${A:-x}', {})).toEqual({ value: 'x', missing: [] });
    expect(interpolate('${A:-x}', { A: 'y' })).toEqual({ value: 'y', missing: [] });
    expect(interpolate('${B:?set B}', {})).toEqual({ value: '', missing: ['B'] });
    expect(interpolate('$$topics $C', { C: 'c' })).toEqual({ value: '$topics c', missing: [] });
  });

  it('is the file the checks read', () => {
    expect(composeFile).toBe('docker/compose.yaml');
  });
});
