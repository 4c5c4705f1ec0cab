// The local stack's launcher (run by tools/start.mjs once dependencies and system
// prerequisites are there): PostgreSQL nodes, Redis, Kafka, migrations, the services;
// prints `ready: <PUBLIC_BASE_URL>`; stops everything on SIGINT/SIGTERM, keeping the data.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import {
  ConfigError,
  REPO_ROOT,
  SERVICE_ROLES,
  buildInventory,
  paths,
  readEnvironment,
  readStackJson,
  rolePasswordFile,
  secretFile,
  shardNodesEnv,
} from './config.mjs';
import { PgCluster } from './pg.mjs';
import { PgBackRest } from './pgbackrest.mjs';
import { shardsToStop } from './provision.mjs';
import { redisProcess, waitForRedis } from './redis.mjs';
import { ensureTopics, kafkaProcess } from './kafka.mjs';
import { Supervised } from './supervisor.mjs';
import { canConnect, isAlive, log, processesOfStack, setLogFile, sleep, waitFor } from './util.mjs';

// V8's defaults let a busy service's heap grow to well over 200 MB of mostly garbage
// before a full collection; these keep every service under 150 MB RSS under load
// (bench/README.md). The same flags are in docker/Dockerfile (NODE_OPTIONS).
const SERVICE_HEAP_FLAGS = ['--max-semi-space-size=8', '--max-old-space-size=96'];

class Aborted extends Error {}

export async function launch(env = process.env) {
  const t0 = Date.now();
  let config;
  try {
    config = readEnvironment(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`configuration error: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const p = paths(config.stackDir);
  for (const dir of [p.stackDir, p.logs, p.run]) mkdirSync(dir, { recursive: true });
  setLogFile(p.launcherLog);

  acquireLock(p);
  await cleanLeftovers(p);

  const pgPassword = secretFile(p.pgPassword, 24).value;
  // Each service connects as its own role with its own password (never printed, never in stack.json).
  const rolePasswords = Object.fromEntries(Object.keys(SERVICE_ROLES).map((service) => [service, secretFile(rolePasswordFile(p.stackDir, service), 24).value]));
  const admin = secretFile(p.adminToken, 32, config.adminToken);
  // The token itself is never logged: it is in the file, for `cat` or the /admin page.
  if (admin.created) log('info', `generated ADMIN_TOKEN, written to ${p.adminToken}`, {}, { important: true });
  const rpcSecret = secretFile(p.rpcSecret, 32).value;

  const previous = readStackJson(config.stackDir);
  if (previous) {
    const shards = previous.shards.length;
    const replicas = previous.shards[0].nodes.length - 1;
    if ((env.SHARDS && Number(env.SHARDS) !== shards) || (env.REPLICAS && Number(env.REPLICAS) !== replicas)) {
      log(
        'warn',
        `existing stack in ${config.stackDir} has SHARDS=${shards} REPLICAS=${replicas}; using those (remove the directory for a new stack)`,
        {},
        { important: true },
      );
    }
    if (env.REPLICATION_MODE && env.REPLICATION_MODE !== previous.replicationMode) {
      log('warn', `existing stack was created with REPLICATION_MODE=${previous.replicationMode}; using that`, {}, { important: true });
    }
  }
  const inventory = buildInventory(config, previous);
  const pgCluster = new PgCluster(inventory, { pgBin: config.pgBin, password: pgPassword, replicationMode: inventory.replicationMode });

  const state = { stopping: false, processes: {}, services: [], pgStarting: Promise.resolve(), exitCode: 0 };
  const baseEnv = { ...process.env };
  const serviceEnvs = serviceEnvironments(config, inventory, { pgPassword, rolePasswords, adminToken: admin.value, rpcSecret });
  writeInventory(p, inventory, serviceEnvs);

  const shutdown = async (reason, exitCode = 0) => {
    if (state.stopping) return;
    state.stopping = true;
    log('info', 'stopping the stack', { reason }, { important: true });
    const t = Date.now();
    // monitors first (they would otherwise react to the nodes going away), then the rest
    const monitors = state.services.filter((s) => s.name.startsWith('monitor-'));
    await Promise.all(monitors.map((s) => s.stop()));
    await Promise.all(state.services.filter((s) => !monitors.includes(s)).map((s) => s.stop()));
    state.build?.kill('SIGTERM');
    state.migrate?.kill('SIGTERM');
    await Promise.race([state.pgStarting.catch(() => undefined), sleep(150_000)]);
    // shards provisioned while the stack ran (npm run stack -- provision-shard) stop with it
    try {
      pgCluster.inventory.shards = shardsToStop(pgCluster.inventory.shards, readStackJson(config.stackDir));
    } catch (error) {
      log('warn', `stack.json unreadable at stop: ${error.message}`);
    }
    await Promise.all([state.processes.kafka?.stop(), state.processes.redis?.stop(), pgCluster.stopAll()]);
    const left = processesOfStack(config.stackDir);
    if (left.length > 0) {
      log('warn', 'processes of the stack still running after stop; killing them', { left });
      for (const proc of left) {
        try {
          process.kill(proc.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    rmSync(p.launcherLock, { force: true });
    log('info', 'stack stopped', { seconds: (Date.now() - t) / 1000 }, { important: true });
    process.exit(exitCode);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => void shutdown(signal));
  }
  // whatever goes wrong inside the launcher, it still stops what it started
  process.on('unhandledRejection', (error) => {
    log('error', `launcher error: ${error?.stack ?? error}`, {}, { important: true });
    void shutdown('launcher error', 1);
  });
  process.on('uncaughtException', (error) => {
    log('error', `launcher error: ${error?.stack ?? error}`, {}, { important: true });
    void shutdown('launcher error', 1);
  });
  const check = () => {
    if (state.stopping) throw new Aborted('stopping');
  };

  try {
    await checkPortsFree(inventory, pgCluster, config);
    // The TypeScript build runs beside the infrastructure start: both take a while.
    const build = config.skipServices || config.skipBuild ? Promise.resolve(true) : runBuild(state, p);

    const redis = redisProcess(inventory, baseEnv);
    state.processes.redis = redis;
    redis.start();

    const kafkaReady = (async () => {
      const kafka = await kafkaProcess(inventory, baseEnv);
      check();
      state.processes.kafka = kafka;
      kafka.start();
      await ensureTopics(inventory);
      log('info', 'kafka ready', { brokers: inventory.kafka.brokers, seconds: (Date.now() - t0) / 1000 });
    })();

    state.pgStarting = (async () => {
      const backups = new PgBackRest(pgCluster);
      backups.prepare(); // before any node starts: archive_command names its config
      const { created } = await pgCluster.startAll();
      await pgCluster.waitAllAccepting();
      await backups.ensureStanzas();
      log('info', 'postgres nodes ready', { nodes: pgCluster.nodes().length, created: created.length, seconds: (Date.now() - t0) / 1000 });
    })();
    // awaited below, one after the other: an early failure must not be an unhandled rejection
    kafkaReady.catch(() => undefined);
    state.pgStarting.catch(() => undefined);
    writeInventory(p, inventory, serviceEnvs); // now with the postgres OS user

    await waitForRedis(inventory);
    log('info', 'redis ready', { url: inventory.redis.url });
    await state.pgStarting;
    check();
    await kafkaReady;
    check();

    const built = await build;
    check();
    if (!built && !config.skipServices) {
      throw new Error(`npm run build failed; see ${join(p.logs, 'build.log')}`);
    }
    // the migrate CLI also sets the service roles' passwords (kept out of stack.json)
    const rolePasswordEnv = { PG_WRITER_PASSWORD: rolePasswords.writer, PG_READER_PASSWORD: rolePasswords.reader, PG_MONITOR_PASSWORD: rolePasswords.monitor };
    if (await runMigrations(state, p, { ...serviceEnvs.migrate, ...rolePasswordEnv })) {
      inventory.migrations = { applied: true, at: new Date().toISOString() };
      writeInventory(p, inventory, serviceEnvs);
    }
    check();

    if (config.skipServices) {
      log('info', 'STACK_SKIP_SERVICES is set: infrastructure only', {}, { important: true });
    } else {
      startServices(state, config, inventory, serviceEnvs);
      // Ready means served: the gateway alone is ready once Redis answers, but a link not in
      // the cache (every link, on a stack restored from backups) needs a reader, a create the writer.
      const readyUrls = [
        ['gateway', config.port],
        ['writer', inventory.services.writer.httpPort],
        ...inventory.services.readers.map((reader) => [reader.name, reader.httpPort]),
      ].map(([name, port]) => [name, `http://127.0.0.1:${port}/health/ready`]);
      await waitFor(
        `${readyUrls.map(([name]) => name).join(', ')} ready`,
        async () => {
          check();
          for (const [name, url] of readyUrls) {
            const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
            const body = await response.text();
            // thrown, not returned: waitFor's timeout message names the last service not ready and why
            if (response.status !== 200) throw new Error(`${name} answered ${response.status}: ${body.slice(0, 300)}`);
          }
          return true;
        },
        { timeoutMs: Number(env.STACK_READY_TIMEOUT_MS || 300_000), intervalMs: 500 },
      );
    }
    check();
    log('info', 'stack started', { seconds: (Date.now() - t0) / 1000 }, { important: true });
    process.stdout.write(`ready: ${config.publicBaseUrl}\n`);
  } catch (error) {
    if (error instanceof Aborted || state.stopping) return;
    log('error', `start failed: ${error.message}`, {}, { important: true });
    await shutdown('start failed', 1);
  }
}

/** Fails early, naming the port, when something else already listens where we would. */
async function checkPortsFree(inventory, pgCluster, config) {
  const wanted = [
    ['redis', inventory.redis.port],
    ['kafka', Number(inventory.kafka.brokers[0].split(':')[1])],
    ['kafka controller', Number(inventory.kafka.controller.split(':')[1])],
  ];
  for (const node of pgCluster.nodes()) {
    if ((await pgCluster.status(node)) !== 'running') wanted.push([`postgres ${node.name}`, node.port]);
  }
  if (!config.skipServices) {
    const s = inventory.services;
    wanted.push(['gateway (PORT)', s.gateway.port], ['writer rpc', s.writer.rpcPort], ['writer http', s.writer.httpPort]);
    for (const r of s.readers) wanted.push([`${r.name} rpc`, r.rpcPort], [`${r.name} http`, r.httpPort]);
    for (const m of s.monitors) wanted.push([`${m.name} http`, m.httpPort]);
  }
  const busy = [];
  await Promise.all(
    wanted.map(async ([what, port]) => {
      if (await canConnect('127.0.0.1', port, 1000)) busy.push(`${port} (${what})`);
    }),
  );
  if (busy.length > 0) {
    throw new Error(
      `ports already in use: ${busy.sort().join(', ')}; another stack may be running there (choose other ports with PORT, PG_BASE_PORT, REDIS_PORT, KAFKA_PORT, SERVICES_BASE_PORT)`,
    );
  }
}

function acquireLock(p) {
  if (existsSync(p.launcherLock)) {
    const pid = Number(readFileSync(p.launcherLock, 'utf8').trim());
    if (pid && pid !== process.pid && isAlive(pid)) {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        /* not on Linux */
      }
      if (cmd === '' || cmd.includes('node')) {
        process.stderr.write(`another launcher (pid ${pid}) is running on STACK_DIR=${p.stackDir}; stop it first (or: npm run stack -- stop)\n`);
        process.exit(3);
      }
    }
  }
  writeFileSync(p.launcherLock, `${process.pid}\n`);
}

/** Services, Redis or Kafka left running by a launcher that was killed. */
async function cleanLeftovers(p) {
  const signalled = [];
  for (const file of readdirSync(p.run)) {
    if (!file.endsWith('.pid') || file === 'launcher.pid') continue;
    const pid = Number(readFileSync(join(p.run, file), 'utf8').trim());
    const ours = processesOfStack(p.stackDir).some((proc) => proc.pid === pid);
    if (pid && ours && isAlive(pid)) {
      log('warn', 'stopping a process left by an earlier launcher', { process: file.replace(/\.pid$/, ''), pid });
      signalled.push(pid);
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* gone */
        }
      }
    }
    rmSync(join(p.run, file), { force: true });
  }
  for (let i = 0; i < 60 && signalled.some(isAlive); i++) await sleep(250);
  for (const pid of signalled.filter(isAlive)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

function serviceEnvironments(config, inventory, { pgPassword, rolePasswords, adminToken, rpcSecret }) {
  const common = {
    LOG_LEVEL: config.logLevel,
    HTTP_HOST: '127.0.0.1',
    RPC_HOST: '127.0.0.1',
    REPLICATION_MODE: inventory.replicationMode,
    KAFKA_BROKERS: inventory.kafka.brokers.join(','),
    SHARD_NODES: shardNodesEnv(inventory),
    REDIS_URL: inventory.redis.url,
  };
  // Only the services that use PostgreSQL get credentials, each its own role's (the gateway none).
  const database = (service) => ({ PG_USER: SERVICE_ROLES[service], PG_PASSWORD: rolePasswords[service], PG_DATABASE: 'shortener' });
  const s = inventory.services;
  const envs = {
    migrate: { SHARD_NODES: common.SHARD_NODES, PG_USER: 'postgres', PG_PASSWORD: pgPassword, PG_DATABASE: 'shortener', LOG_LEVEL: config.logLevel },
    gateway: {
      ...common,
      PORT: String(config.port),
      PUBLIC_BASE_URL: config.publicBaseUrl,
      ADMIN_TOKEN: adminToken,
      WRITER_ADDR: `127.0.0.1:${s.writer.rpcPort}`,
      READER_ADDRS: s.readers.map((r) => `127.0.0.1:${r.rpcPort}`).join(','),
      RPC_SECRET: rpcSecret,
    },
    writer: { ...common, RPC_PORT: String(s.writer.rpcPort), HTTP_PORT: String(s.writer.httpPort), RPC_SECRET: rpcSecret },
  };
  for (const r of s.readers) envs[r.name] = { ...common, RPC_PORT: String(r.rpcPort), HTTP_PORT: String(r.httpPort), RPC_SECRET: rpcSecret };
  for (const m of s.monitors) {
    envs[m.name] = {
      ...common,
      HTTP_PORT: String(m.httpPort),
      MONITOR_ID: m.name,
      NODE_CONTROL: 'local',
      STACK_DIR: config.stackDir,
      // where LocalNodeControl finds cli.mjs (provision-shard, retire-shard)
      STACK_TOOLS_DIR: join(REPO_ROOT, 'tools', 'stack'),
      PG_BIN: config.pgBin,
    };
    if (process.geteuid?.() === 0) envs[m.name].PG_OS_USER = process.env.PG_OS_USER || 'postgres';
  }
  Object.assign(envs.writer, database('writer'));
  for (const r of s.readers) Object.assign(envs[r.name], database('reader'));
  for (const m of s.monitors) Object.assign(envs[m.name], database('monitor'));
  return envs;
}

function writeInventory(p, inventory, serviceEnvs) {
  const redact = (env) =>
    Object.fromEntries(Object.entries(env).map(([k, v]) => [k, k === 'PG_PASSWORD' || k === 'ADMIN_TOKEN' || k === 'RPC_SECRET' ? '(secret)' : v]));
  const services = {
    ...inventory.services,
    env: Object.fromEntries(Object.entries(serviceEnvs).map(([name, env]) => [name, redact(env)])),
  };
  writeFileSync(p.stackJson, `${JSON.stringify({ ...inventory, services }, null, 2)}\n`);
}

function runBuild(state, p) {
  return new Promise((resolveBuild) => {
    const t = Date.now();
    log('info', 'npm run build', { logFile: join(p.logs, 'build.log') });
    const out = openAppend(join(p.logs, 'build.log'));
    const child = spawn('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: ['ignore', out, out], env: { ...process.env, SHORTENER_STACK_DIR: p.stackDir } });
    closeSync(out);
    state.build = child;
    child.on('exit', (code) => {
      state.build = undefined;
      if (code === 0) log('info', 'build done', { seconds: (Date.now() - t) / 1000 });
      else log('error', 'npm run build failed', { code, logFile: join(p.logs, 'build.log') }, { important: true });
      resolveBuild(code === 0);
    });
    child.on('error', () => resolveBuild(false));
  });
}

function openAppend(file) {
  return openSync(file, 'a');
}

async function runMigrations(state, p, env) {
  const cli = join(REPO_ROOT, 'dist', 'libs', 'db', 'src', 'migrate.cli.js');
  if (!existsSync(cli)) {
    log('warn', `migrations skipped: ${cli} does not exist (run npm run build)`, {}, { important: true });
    return false;
  }
  const t = Date.now();
  const out = openAppend(join(p.logs, 'migrate.log'));
  const code = await new Promise((resolveRun) => {
    const child = spawn(process.execPath, [cli], {
      cwd: REPO_ROOT,
      stdio: ['ignore', out, out],
      env: { ...process.env, ...env, SHORTENER_STACK_DIR: p.stackDir },
    });
    closeSync(out);
    state.migrate = child;
    child.on('exit', (c) => resolveRun(c ?? 1));
    child.on('error', () => resolveRun(1));
  });
  state.migrate = undefined;
  if (code !== 0) throw new Error(`migrations failed (exit ${code}); see ${join(p.logs, 'migrate.log')}`);
  log('info', 'migrations applied', { seconds: (Date.now() - t) / 1000 });
  return true;
}

function startServices(state, config, inventory, envs) {
  const entry = (app) => join(REPO_ROOT, 'dist', 'apps', app, 'src', 'main.js');
  const specs = [
    ...inventory.services.monitors.map((m) => ({ name: m.name, app: 'failover-monitor' })),
    { name: 'writer', app: 'writer' },
    ...inventory.services.readers.map((r) => ({ name: r.name, app: 'reader' })),
    { name: 'gateway', app: 'gateway' },
  ];
  for (const spec of specs) {
    const main = entry(spec.app);
    if (!existsSync(main)) {
      // an app not written yet: the rest of the stack still starts (readiness is the gateway's)
      log('error', `${spec.name} not started: ${main} does not exist after the build`, {}, { important: true });
      continue;
    }
    const service = new Supervised({
      name: spec.name,
      command: process.execPath,
      // STACK_NODE_ARGS: extra node flags for every service, e.g. --cpu-prof for profiling
      args: [...SERVICE_HEAP_FLAGS, ...(process.env.STACK_NODE_ARGS ?? '').split(' ').filter(Boolean), '--enable-source-maps', main],
      env: { ...process.env, ...envs[spec.name] },
      cwd: REPO_ROOT,
      stackDir: config.stackDir,
      stopTimeoutMs: 15_000,
    });
    state.services.push(service);
    service.start();
  }
  log('info', 'services started', { services: state.services.map((s) => s.name) });
}

// run directly: node tools/stack/launcher.mjs (tools/start.mjs is the checked entry point)
if (import.meta.url === `file://${process.argv[1]}`) {
  void launch();
}
