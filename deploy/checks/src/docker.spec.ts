import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { commandOf, loadCompose } from './compose';
import { environmentOf, execForm, expandArgs, instructions, loadDockerfile, parseDockerfile, stageNamed } from './dockerfile';
import { mainScript, serviceEnvironments, serviceNames } from './environment';
import { readRepoFile, repoPath } from './files';
import { containersOf, renderKustomization } from './kustomize';

// Generous: CI runs these beside builds and a whole stack on two cores.
jest.setTimeout(120_000);

describe('docker/Dockerfile', () => {
  const dockerfile = loadDockerfile();

  it('builds on node:20-bookworm-slim, with the whole dist/ and production dependencies only', () => {
    expect(dockerfile.globalArgs.NODE_IMAGE).toBe('node:20-bookworm-slim');
    const builder = stageNamed(dockerfile, 'builder')!;
    expect(expandArgs(builder.from, dockerfile.globalArgs)).toBe('node:20-bookworm-slim');
    expect(
      instructions(builder, 'RUN')
        .map((run) => run.value)
        .join('\n'),
    ).toMatch(/npm ci[\s\S]*npm run build/);
    const deps = stageNamed(dockerfile, 'deps')!;
    expect(instructions(deps, 'RUN')[0].value).toMatch(/npm ci --omit=dev/);
    const runtime = stageNamed(dockerfile, 'runtime')!;
    expect(expandArgs(runtime.from, dockerfile.globalArgs)).toBe('node:20-bookworm-slim');
    expect(instructions(runtime, 'COPY').map((copy) => copy.value)).toEqual(
      expect.arrayContaining(['--from=builder /src/dist ./dist', '--from=deps /app/node_modules ./node_modules']),
    );
    expect(instructions(runtime, 'USER').pop()?.value).toBe('node');
  });

  it('the tsc build writes the layout the images run (tsconfig.build.json: rootDir ., outDir dist)', () => {
    const build = JSON.parse(readRepoFile('tsconfig.build.json')) as {
      compilerOptions: { outDir: string };
      include: string[];
    };
    expect(build.compilerOptions.outDir).toBe('dist');
    for (const service of serviceNames) expect(build.include).toContain(`apps/${service}/src/**/*.ts`);
    expect(build.include).toContain('libs/*/src/**/*.ts');
    expect(JSON.parse(readRepoFile('package.json')).scripts.build).toMatch(/tsc -p tsconfig\.build\.json && tsc-alias -p tsconfig\.build\.json/);
  });

  it('every entry point the images run has its source (dist/X.js comes from X.ts)', () => {
    for (const script of [...serviceNames.map(mainScript), 'dist/libs/db/src/migrate.cli.js']) {
      const source = script.replace(/^dist\//, '').replace(/\.js$/, '.ts');
      expect({ script, source: existsSync(repoPath(source)) }).toEqual({ script, source: true });
    }
  });

  it.each(serviceNames)('has a stage for %s: entry point, health check on its HTTP port variable, non-root', (service) => {
    const stage = stageNamed(dockerfile, `app-${service}`)!;
    expect(stage.from).toBe('runtime');
    expect(execForm(instructions(stage, 'CMD').pop())).toEqual(['node', mainScript(service)]);
    expect(execForm(instructions(stage, 'HEALTHCHECK').pop())).toEqual(['node', '/app/healthcheck.js']);
    const environment = environmentOf(stage);
    expect(environment.HEALTH_PORT_VARIABLE).toBe(serviceEnvironments[service].httpPortVariable);
    expect(
      instructions(stage, 'EXPOSE')
        .map((expose) => expose.value)
        .join(' '),
    ).toContain(environment[serviceEnvironments[service].httpPortVariable]);
    const user = instructions(stage, 'USER').pop()?.value;
    expect(user === undefined || user === 'node').toBe(true);
  });

  it('gives the failover monitor the PostgreSQL 15 client tools', () => {
    const stage = stageNamed(dockerfile, 'app-failover-monitor')!;
    expect(
      instructions(stage, 'RUN')
        .map((run) => run.value)
        .join('\n'),
    ).toMatch(/apt-get install .*postgresql-client-15/);
  });

  it('ends with the stage picked by --build-arg APP', () => {
    const last = dockerfile.stages[dockerfile.stages.length - 1];
    expect(last.from).toBe('app-${APP}');
    expect(serviceNames).toContain(dockerfile.globalArgs.APP);
  });

  it('compose and k8s start the same entry point as the image', () => {
    const compose = loadCompose();
    for (const [name, service] of Object.entries(compose.services)) {
      const app = service.build?.args?.APP;
      if (!app || name === 'migrate') continue;
      const cmd = execForm(instructions(stageNamed(dockerfile, `app-${app}`)!, 'CMD').pop())!;
      expect({ name, script: commandOf(service).pop() }).toEqual({
        name,
        script: cmd[cmd.length - 1],
      });
    }
    for (const object of renderKustomization('k8s/overlays/local').objects.filter((candidate) => candidate.kind === 'Deployment')) {
      for (const container of containersOf(object)) {
        const stage = stageNamed(dockerfile, `app-${object.metadata.name}`);
        if (!stage) continue;
        expect(container.command?.pop()).toBe(execForm(instructions(stage, 'CMD').pop())!.pop());
      }
    }
  });

  it('parser rejects what it cannot read', () => {
    expect(() => parseDockerfile('RUN echo before from\n')).toThrow(/only ARG/);
    expect(() => parseDockerfile('FROM a\nRUN x \\')).toThrow(/continued line/);
    const parsed = parseDockerfile('ARG X=1\nFROM img:${X} AS one\n# comment\nRUN a \\\n  b\nCMD ["node", "x.js"]\n');
    expect(parsed.stages[0].instructions[0].value).toBe('a b');
    expect(execForm(parsed.stages[0].instructions[1])).toEqual(['node', 'x.js']);
  });

  it('.dockerignore keeps node_modules, dist and the stack out of the build context', () => {
    const ignored = readRepoFile('.dockerignore').split('\n');
    expect(ignored).toEqual(expect.arrayContaining(['**/node_modules', 'dist', '.stack', '.git']));
  });
});

describe('docker/healthcheck.js', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((request, response) => {
      response.statusCode = request.url === '/health/live' ? 200 : 503;
      response.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const run = (env: Record<string, string>, args: string[] = []) =>
    new Promise<number | null>((resolve) => {
      const { spawn } = require('node:child_process') as typeof import('node:child_process');
      const child = spawn(process.execPath, [repoPath('docker/healthcheck.js'), ...args], {
        env: { PATH: process.env.PATH ?? '', ...env },
        stdio: 'ignore',
      });
      child.on('exit', (code) => resolve(code));
    });

  it('is healthy when /health/live on the port named by HEALTH_PORT_VARIABLE answers 2xx', async () => {
    expect(await run({ HEALTH_PORT_VARIABLE: 'HTTP_PORT', HTTP_PORT: String(port) })).toBe(0);
    expect(await run({ HEALTH_PORT_VARIABLE: 'PORT', PORT: String(port) })).toBe(0);
  });

  it('is unhealthy on a non-2xx answer or no answer', async () => {
    expect(await run({}, [`http://127.0.0.1:${port}/health/ready`])).toBe(1);
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    expect(await run({ HEALTH_PORT_VARIABLE: 'HTTP_PORT', HTTP_PORT: String(closedPort) })).toBe(1);
  });
});

describe('PostgreSQL node scripts', () => {
  const pairs = [
    ['docker/postgres/node-entrypoint.sh', 'k8s/base/postgres/node-entrypoint.sh'],
    ['docker/postgres/initdb/10-replication.sh', 'k8s/base/postgres/10-replication.sh'],
    ['docker/postgres/backup.sh', 'k8s/base/postgres/backup.sh'],
  ];

  it.each(pairs)('%s and %s are the same file', (dockerCopy, kubernetesCopy) => {
    expect(readFileSync(repoPath(kubernetesCopy), 'utf8')).toBe(readFileSync(repoPath(dockerCopy), 'utf8'));
  });

  it.each(pairs.map(([file]) => file))('%s is valid bash', (file) => {
    const result = spawnSync('bash', ['-n', repoPath(file)], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('sets up quorum replication, replication access and the node names of runtime.md', () => {
    const init = readRepoFile('docker/postgres/initdb/10-replication.sh');
    for (const setting of ["wal_level = 'replica'", "hot_standby = 'on'", "wal_log_hints = 'on'", 'synchronous_standby_names']) expect(init).toContain(setting);
    expect(init).toMatch(/quorum\) sync_names="ANY 1 \(/);
    expect(init).toContain('host replication all all scram-sha-256');
    const entrypoint = readRepoFile('docker/postgres/node-entrypoint.sh');
    expect(entrypoint).toMatch(/pg_basebackup -D "\$PGDATA" -X stream -R -C -S "\$node_name"/);
    expect(entrypoint).toMatch(/pg_rewind -D "\$PGDATA" -R --source-server/);
    expect(entrypoint).toContain('application_name=$node_name');
  });

  it('refuses a host name it cannot map to a node, before touching anything', () => {
    const result = spawnSync('bash', [repoPath('docker/postgres/node-entrypoint.sh'), 'postgres'], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '',
        PG_HOSTNAME: 'db-primary',
        PGDATA: '/nonexistent/pgdata',
      },
    });
    expect(result.status).toBe(64);
    expect(result.stderr).toMatch(/cannot tell shard and index/);
  });
});
