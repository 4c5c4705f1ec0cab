/**
 * The e2e suites against the compose topology (tools/docker/test.mjs): the inventory in
 * E2E_STACK_DIR/stack.json then has `target: "compose"` and names every part by its
 * compose service and in-network port (s0n0:5432, redis:6379, kafka:9092), as the
 * services and the cluster document name them. The tests run on the host, outside the
 * compose network, so they reach a container through its address on that network, looked
 * up with `docker inspect` at each connection: a container that was restarted or cut off
 * and reconnected may come back with another address.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ComposeTarget {
  project: string;
  /** The compose network, e.g. shortener-e2e_default. */
  network: string;
  docker: string;
}

/** The container of a compose service (the first replica): its id. */
export async function containerOf(target: ComposeTarget, service: string): Promise<string> {
  const { stdout } = await run(target.docker, [
    'ps',
    '-a',
    '-q',
    '--filter',
    `label=com.docker.compose.project=${target.project}`,
    '--filter',
    `label=com.docker.compose.service=${service}`,
  ]);
  const id = stdout.trim().split('\n')[0];
  if (!id) throw new Error(`no container for compose service ${service} in project ${target.project}`);
  return id;
}

/** The service's address on the compose network (throws while it has none: stopped or cut off). */
export async function composeAddress(target: ComposeTarget, service: string): Promise<string> {
  const id = await containerOf(target, service);
  const { stdout } = await run(target.docker, ['inspect', '--format', `{{with index .NetworkSettings.Networks "${target.network}"}}{{.IPAddress}}{{end}}`, id]);
  const address = stdout.trim();
  if (!address) throw new Error(`compose service ${service} has no address on ${target.network} right now`);
  return address;
}

/** `docker <args>` (the CLI the test runner chose); resolves with its stdout. */
export async function dockerCli(target: ComposeTarget, args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await run(target.docker, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/** Every container of the project (running or not): id and compose service. */
export async function projectContainers(target: ComposeTarget): Promise<{ id: string; service: string; name: string }[]> {
  const stdout = await dockerCli(target, [
    'ps',
    '-a',
    '--filter',
    `label=com.docker.compose.project=${target.project}`,
    '--format',
    '{{.ID}}\t{{.Label "com.docker.compose.service"}}\t{{.Names}}',
  ]);
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [id, service, name] = line.split('\t');
      return { id, service, name };
    });
}

/**
 * What `docker logs` holds of each container of the project (its stdout and stderr, as the
 * logging driver kept them): under compose the services, PostgreSQL, Redis and Kafka log
 * there, where the local stack writes files under STACK_DIR/logs.
 */
export async function containerLogs(target: ComposeTarget): Promise<{ name: string; text: string }[]> {
  const logs: { name: string; text: string }[] = [];
  for (const container of await projectContainers(target)) {
    const { stdout, stderr } = await run(target.docker, ['logs', container.id], { timeout: 60_000, maxBuffer: 256 * 1024 * 1024 });
    logs.push({ name: `docker logs ${container.name}`, text: stdout + stderr });
  }
  return logs;
}
