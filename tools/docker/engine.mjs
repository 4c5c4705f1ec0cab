// The Docker engine and the compose CLI for tools/docker/*.mjs.
//
// - `docker` is DOCKER_BIN, else the CLI that ships with the engine (/usr/bin/docker of
//   Debian's docker.io: its built-in BuildKit needs no buildx plugin), else `docker` on PATH.
// - Compose is `docker compose` (v2) when the CLI has it, else Debian's `docker-compose`
//   1.29 (v1), which rejects the top-level `name:` of the current Compose Specification:
//   it gets a copy of docker/compose.yaml without that line, next to it (same relative
//   paths, git-ignored), and the project name by `-p`.
// - When no engine answers and the user is root, Debian's docker.io is installed (when
//   missing) and `dockerd` is started with overlay2 and --iptables=false (no NAT rules
//   touched on the host: containers talk to each other and the gateway is published
//   through docker-proxy; images are built with --network host). Its pid is kept in
//   docker/.state/dockerd.pid, so that `docker:down` stops only a dockerd started here.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const DOCKER_DIR = join(REPO_ROOT, 'docker');
export const STATE_DIR = join(DOCKER_DIR, '.state');
export const COMPOSE_FILE = join(DOCKER_DIR, 'compose.yaml');
const DOCKERD_PID = join(STATE_DIR, 'dockerd.pid');

export function say(message) {
  process.stdout.write(`[docker] ${message}\n`);
}

export const dockerBin = process.env.DOCKER_BIN || (existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker');

/** Runs a command; returns {code, stdout, stderr}. `inherit` shows its output as it runs. */
export function run(command, args, { inherit = false, env = process.env, input, allowFail = false, cwd = REPO_ROOT, timeoutMs } = {}) {
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(command, args, {
      cwd,
      env,
      stdio: [input === undefined ? 'ignore' : 'pipe', inherit ? 'inherit' : 'pipe', inherit ? 'inherit' : 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk) => (stdout += chunk));
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    if (input !== undefined) child.stdin.end(input);
    const timer = timeoutMs ? setTimeout(() => child.kill('SIGKILL'), timeoutMs) : null;
    child.on('error', (error) => {
      if (timer) clearTimeout(timer);
      if (allowFail) resolveRun({ code: 127, stdout, stderr: String(error.message) });
      else rejectRun(error);
    });
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      const result = { code: code ?? 128, signal, stdout, stderr };
      if (code !== 0 && !allowFail)
        rejectRun(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}${stderr ? `: ${stderr.trim().slice(-2000)}` : ''}`));
      else resolveRun(result);
    });
  });
}

export const docker = (args, options) => run(dockerBin, args, options);

function commandExists(name) {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

export async function engineAnswers() {
  return (await docker(['info', '--format', '{{.ServerVersion}}'], { allowFail: true, timeoutMs: 15_000 })).code === 0;
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

async function aptInstall(packages) {
  say(`installing ${packages.join(', ')} (apt-get)`);
  await run('apt-get', ['update', '-qq'], { inherit: true });
  await run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
    inherit: true,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

/** Installs the Debian packages that are missing (root only); otherwise says what to run. */
export async function ensurePackages(needed) {
  const missing = needed.filter(([command]) => !commandExists(command)).map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  if (!isRoot()) throw new Error(`missing: ${missing.join(', ')}; install them with: sudo apt-get install -y ${missing.join(' ')}`);
  await aptInstall(missing);
}

function dockerdStartedHere() {
  if (!existsSync(DOCKERD_PID)) return null;
  const pid = Number(readFileSync(DOCKERD_PID, 'utf8').trim());
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    rmSync(DOCKERD_PID, { force: true });
    return null;
  }
}

/** Makes sure an engine answers; starts (and if need be installs) dockerd when root. */
export async function ensureEngine() {
  if (await engineAnswers()) return { startedHere: Boolean(dockerdStartedHere()) };
  if (!isRoot()) {
    throw new Error(
      'no Docker engine answers. Start one (e.g. `sudo systemctl start docker`, or `sudo dockerd --iptables=false &`), ' +
        'or run `npm run docker:up` as root to have it installed (Debian: apt-get install docker.io) and started',
    );
  }
  await ensurePackages([['dockerd', 'docker.io']]);
  mkdirSync(STATE_DIR, { recursive: true });
  const log = openSync(join(STATE_DIR, 'dockerd.log'), 'a');
  const args = (process.env.DOCKERD_ARGS || '--iptables=false --storage-driver=overlay2').split(/\s+/).filter(Boolean);
  say(`starting dockerd ${args.join(' ')} (log: docker/.state/dockerd.log)`);
  const child = spawn('dockerd', [...args, '--pidfile', join(STATE_DIR, 'dockerd.docker-pid')], { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  writeFileSync(DOCKERD_PID, `${child.pid}\n`);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (await engineAnswers()) return { startedHere: true };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`dockerd did not answer within 60 s; see docker/.state/dockerd.log`);
}

/** Stops the dockerd that ensureEngine started (none otherwise). */
export async function stopEngineStartedHere() {
  const pid = dockerdStartedHere();
  if (!pid) return false;
  say(`stopping the dockerd started by docker:up (pid ${pid})`);
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      rmSync(DOCKERD_PID, { force: true });
      return true;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  process.kill(pid, 'SIGKILL');
  rmSync(DOCKERD_PID, { force: true });
  return true;
}

let composeCli;

/** [command, ...leading args] of the compose CLI, and the file to give it. */
export async function composeCommand() {
  if (composeCli) return composeCli;
  if ((await docker(['compose', 'version'], { allowFail: true })).code === 0) {
    composeCli = { command: dockerBin, base: ['compose'], file: COMPOSE_FILE, v1: false };
  } else {
    await ensurePackages([['docker-compose', 'docker-compose']]);
    composeCli = { command: 'docker-compose', base: [], file: join(DOCKER_DIR, '.compose-v1.yaml'), v1: true };
  }
  return composeCli;
}

/** Runs compose for a project: `compose(['up', '-d'], {project, env})`. */
export async function compose(args, { project = 'shortener', env = process.env, inherit = true, allowFail = false } = {}) {
  const cli = await composeCommand();
  if (cli.v1) {
    // Compose v1 predates the top-level `name:` key; everything else of the file it reads as is.
    const text = readFileSync(COMPOSE_FILE, 'utf8').replace(/^name:.*\n/m, '');
    writeFileSync(
      cli.file,
      `# Generated by tools/docker/engine.mjs for docker-compose 1.x from compose.yaml (without the top-level name:). Do not edit.\n${text}`,
    );
  }
  const leading = [...cli.base, '-p', project, '-f', cli.file, '--project-directory', DOCKER_DIR];
  return run(cli.command, [...leading, ...args], { env: { ...env, COMPOSE_PROJECT_NAME: project }, inherit, allowFail });
}

/** Containers of a compose project (running or not), by label: [{id, name, service, state}]. */
export async function projectContainers(project, { all = true } = {}) {
  const { stdout } = await docker(
    [
      'ps',
      ...(all ? ['-a'] : []),
      '--filter',
      `label=com.docker.compose.project=${project}`,
      '--format',
      '{{.ID}}\t{{.Names}}\t{{.Label "com.docker.compose.service"}}\t{{.State}}',
    ],
    { allowFail: true },
  );
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [id, name, service, state] = line.split('\t');
      return { id, name, service, state };
    });
}

/** The named volumes of a compose project, by compose's label. */
export async function projectVolumes(project) {
  const { stdout } = await docker(['volume', 'ls', '-q', '--filter', `label=com.docker.compose.project=${project}`], { allowFail: true });
  return stdout.split('\n').filter(Boolean);
}
