#!/usr/bin/env node
// `npm run test:docker`: the end-to-end suites against the compose topology (docs/reference.md
// section 10). Brings docker/compose.yaml up as its own project (shortener-e2e, gateway on
// 127.0.0.1:${DOCKER_TEST_PORT:-8180}, beside a `docker:up` of project shortener), writes
// an E2E_STACK_DIR whose stack.json names the compose services (target "compose",
// apps/system-e2e/src/support/docker.ts), then runs with jest:
//   - api.e2e-spec.ts: the whole public API suite (each service's /health and /metrics on
//     its container's address);
//   - stack.e2e-spec.ts: replication, Redis and Kafka checks, except "stack directory"
//     (files of a local STACK_DIR);
//   - keys.e2e-spec.ts: API keys, ownership, per-key quotas, listing across the shards;
//   - hostile.e2e-spec.ts: the hostile-client corpus, and no secret in any container's
//     `docker logs` (the local run reads the files under STACK_DIR/logs instead);
//   - operating.e2e-spec.ts: each service's /metrics on its container's address;
//   - docker.compose-spec.ts: the container faults (docker kill / pause / network disconnect
//     of a primary, docker kill of Redis and of a reader) under create and redirect load.
// These are the same spec files as the local run, pointed at the containers through
// E2E_STACK_DIR/stack.json (apps/system-e2e/src/support/docker.ts); where a spec does
// something only a local stack allows it branches on `inventory.target === 'compose'`.
// Not run here: resilience.e2e-spec.ts and failover.faults-spec.ts, which hold local
// processes down through the local supervisor's hold files (docker.compose-spec.ts covers
// their faults with docker); admin.e2e-spec.ts (Chromium, the local supervisor's hold files, and a
// switchover); backup.faults-spec.ts and resharding.reshard-spec.ts (the local
// stack's pgBackRest and provision-shard commands, which compose has not). Then `down
// --volumes`, and the dockerd it started is stopped.
//
//   DOCKER_TEST_KEEP=1   leave the topology running afterwards
//   E2E_ONLY=<regexp>    only the spec files whose path matches
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, docker, dockerBin, projectContainers, say } from './engine.mjs';
import { down } from './down.mjs';
import { imageSizes } from './images.mjs';
import { up } from './up.mjs';
import { runJest } from '../lib/jest-run.mjs';

const PROJECT = process.env.DOCKER_TEST_PROJECT || 'shortener-e2e';
const PORT = String(Number(process.env.DOCKER_TEST_PORT || 8180) + Number(process.env.E2E_PORT_OFFSET || 0));

/** Compose's SHARD_NODES, as the services read it. */
function shardNodes(env) {
  const compose = readFileSync(join(REPO_ROOT, 'docker', 'compose.yaml'), 'utf8');
  const match = /^x-shard-nodes: &shard-nodes '(.*)'$/m.exec(compose);
  if (!match) throw new Error('docker/compose.yaml has no x-shard-nodes anchor');
  void env;
  return JSON.parse(match[1]);
}

async function addresses(network) {
  const result = {};
  for (const container of await projectContainers(PROJECT, { all: false })) {
    const { stdout } = await docker(['inspect', '--format', `{{with index .NetworkSettings.Networks "${network}"}}{{.IPAddress}}{{end}}`, container.id], {
      allowFail: true,
    });
    if (stdout.trim()) result[container.service] = stdout.trim();
  }
  return result;
}

async function writeStackDir(started) {
  const stackDir = mkdtempSync(join(tmpdir(), 'shortener-docker-e2e-'));
  const network = `${PROJECT}_default`;
  const shards = shardNodes(started.env).map((shard) => ({ id: shard.id, nodes: shard.nodes.map((node) => ({ ...node, dataDir: '' })) }));
  const inventory = {
    target: 'compose',
    compose: { project: PROJECT, network, docker: dockerBin },
    addresses: await addresses(network),
    stackDir,
    replicationMode: started.env.REPLICATION_MODE || 'quorum',
    publicBaseUrl: started.publicBaseUrl,
    postgres: { version: 15, binDir: '', user: 'postgres', database: 'shortener', passwordFile: join(stackDir, 'pg-password'), socketDir: '' },
    shards,
    migrations: { applied: true },
    redis: { host: 'redis-0', port: 6379, url: 'redis://redis-0:6379', cluster: { nodes: ['redis-0:6379', 'redis-1:6379', 'redis-2:6379'] } },
    kafka: {
      brokers: ['kafka:9092'],
      controller: 'kafka:9093',
      topics: [
        { topic: 'url.events', numPartitions: 6 },
        { topic: 'url.clicks', numPartitions: 6 },
        { topic: 'cluster.topology', numPartitions: 1 },
        { topic: 'cluster.commands', numPartitions: 1 },
        { topic: 'cluster.operations', numPartitions: 1 },
      ],
    },
    services: {
      gateway: { port: 3000 },
      writer: { rpcPort: 4100, httpPort: 4101 },
      readers: [
        { name: 'reader-0', rpcPort: 4200, httpPort: 4201 },
        { name: 'reader-1', rpcPort: 4200, httpPort: 4201 },
      ],
      monitors: [
        { name: 'failover-monitor-0', httpPort: 4300 },
        { name: 'failover-monitor-1', httpPort: 4300 },
      ],
    },
  };
  writeFileSync(join(stackDir, 'stack.json'), JSON.stringify(inventory, null, 2));
  writeFileSync(join(stackDir, 'pg-password'), `${started.secrets.PG_PASSWORD}\n`, { mode: 0o600 });
  writeFileSync(join(stackDir, 'admin-token'), `${started.secrets.ADMIN_TOKEN}\n`, { mode: 0o600 });
  // Each service role's password, as the local stack keeps them (stack.e2e-spec.ts's least-privilege checks).
  for (const role of ['writer', 'reader', 'monitor'])
    writeFileSync(join(stackDir, `pg-${role}-password`), `${started.secrets[`PG_${role.toUpperCase()}_PASSWORD`]}\n`, { mode: 0o600 });
  return stackDir;
}

const totals = { passed: 0, failed: 0, skipped: 0 };
const failures = [];
const perSuite = [];

/** One suite against the containers (output forwarded, within 15 minutes); adds its counts. */
async function jest(args, env, label) {
  const { ok, result, failure } = await runJest({ args, env, label: `docker-${label}`, limitMs: 15 * 60_000, allowNoTests: Boolean(process.env.E2E_ONLY) });
  if (result) {
    totals.passed += result.numPassedTests;
    totals.failed += result.numFailedTests;
    totals.skipped += result.numPendingTests + (result.numTodoTests ?? 0);
    say(`${label}: ${result.numPassedTests} passed, ${result.numFailedTests} failed, ${result.numPendingTests} skipped`);
    perSuite.push({ label, passed: result.numPassedTests, failed: result.numFailedTests, skipped: result.numPendingTests });
  }
  if (failure) failures.push(failure.replace(/^docker-/, ''));
  return ok;
}

/** Every container's log (the last 5,000 lines) beside the kept stack directory, to read after a failed run. */
async function saveContainerLogs(dir) {
  mkdirSync(dir, { recursive: true });
  for (const container of await projectContainers(PROJECT, { all: true }).catch(() => [])) {
    const { stdout, stderr } = await docker(['logs', '--tail', '5000', container.id], { allowFail: true });
    writeFileSync(join(dir, `${container.name ?? container.service}.log`), stdout + stderr);
  }
  say(`container logs in ${dir}`);
}

/** The whole run; returns the exit code. Shared with tools/test.mjs (its docker phase). */
export async function testDocker() {
  const t0 = Date.now();
  let stackDir = null;
  let started = null;
  try {
    // The suites and fault loads send hundreds of anonymous creates a minute from one address:
    // the deployment's limit of 60 would turn them into 429s (the quota has suites of its own).
    started = await up({
      project: PROJECT,
      port: PORT,
      fresh: true,
      extraEnv: { ANONYMOUS_RATE_LIMIT_PER_MINUTE: process.env.ANONYMOUS_RATE_LIMIT_PER_MINUTE || '0' },
    });
    say(`compose project ${PROJECT} ready at ${started.gatewayUrl} after ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    for (const [name, size] of Object.entries(await imageSizes(started.images))) say(`image ${name}: ${size}`);
    stackDir = await writeStackDir(started);
    const env = { ...process.env, E2E_STACK_DIR: stackDir, E2E_BASE_URL: started.gatewayUrl, E2E_ADMIN_TOKEN: started.secrets.ADMIN_TOKEN };
    const config = ['--config', 'apps/system-e2e/jest.config.ts', '--runInBand'];
    const only = process.env.E2E_ONLY ? new RegExp(process.env.E2E_ONLY) : null;
    const runs = [
      ['api', 'apps/system-e2e/src/api.e2e-spec.ts', null],
      ['stack', 'apps/system-e2e/src/stack.e2e-spec.ts', '^(?!stack directory)'],
      ['keys', 'apps/system-e2e/src/keys.e2e-spec.ts', null],
      ['hostile', 'apps/system-e2e/src/hostile.e2e-spec.ts', null],
      ['operating', 'apps/system-e2e/src/operating.e2e-spec.ts', null],
      ['compose-faults', 'apps/system-e2e/src/docker.compose-spec.ts', null],
    ];
    for (const [label, spec, names] of runs) {
      if (only && !only.test(spec)) continue;
      const t = Date.now();
      await jest(
        [...config, '--testMatch', `<rootDir>/${spec.replace('apps/system-e2e/', '')}`, '--forceExit', ...(names ? ['--testNamePattern', names] : [])],
        env,
        label,
      );
      say(`${label} took ${((Date.now() - t) / 1000).toFixed(0)} s`);
    }
  } catch (error) {
    failures.push(`docker: ${error.message}`);
  } finally {
    if (failures.length > 0 || process.env.DOCKER_TEST_KEEP === '1') {
      const logs = await docker(['ps', '-a', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--format', '{{.Names}}\t{{.Status}}'], {
        allowFail: true,
      });
      process.stdout.write(`[docker] containers:\n${logs.stdout}`);
      if (stackDir) await saveContainerLogs(join(stackDir, 'logs'));
    }
    if (process.env.DOCKER_TEST_KEEP !== '1')
      await down({ project: PROJECT, volumes: true, stopEngine: true }).catch((error) => failures.push(`docker down: ${error.message}`));
    if (stackDir && failures.length === 0) rmSync(stackDir, { recursive: true, force: true });
    else if (stackDir) say(`kept ${stackDir}`);
  }
  for (const failure of failures) say(`FAILED ${failure}`);
  say(`test:docker took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  process.stdout.write(`docker total: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
  return { ok: failures.length === 0 && totals.failed === 0, totals, failures, perSuite };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { ok } = await testDocker();
  process.exit(ok ? 0 : 1);
}
