// `npm run bench`: starts a stack, measures the figures of docs/reference.md section 6 beside
// their references, writes bench/results/latest.json, prints a table, stops the stack.
//   --only=miss,hit,create,failover,reshard   a subset (default: all, in that order; reshard
//                                             adds a shard, so it runs last)
//   BENCH_CONNECTIONS (32), BENCH_SECONDS (8 per side, in BENCH_ROUNDS=4 alternating slices),
//   BENCH_WARMUP_SECONDS (2), BENCH_MISS_CODES
//   (20000), BENCH_HIT_CODES (2000), BENCH_SKIP_BUILD=1 (use dist/ as it is),
//   BENCH_STACK_DIR=<dir> (attach to a running stack; nothing is started or stopped),
//   BENCH_RESHARD_LINKS (200000), BENCH_RESHARD_BASELINE_SECONDS (5),
//   BENCH_RESHARD_CREATE_CONNECTIONS (8), BENCH_RESHARD_TIMEOUT_SECONDS (900),
//   BENCH_STRICT=1 (exit 1 when a target is missed)
import os from 'node:os';
import { clusterOf, redisOf, seedLinks } from './fixtures.mjs';
import { machine, memoryFigure, perCore, table, writeResults } from './report.mjs';
import { create, failover, MemoryWatch, redirectCacheHit, redirectCacheMiss, reshard, settings } from './scenarios.mjs';
import { startStack } from './stack.mjs';

// reshard changes the topology for good (a fifth shard): last
const PHASES = ['miss', 'hit', 'create', 'failover', 'reshard'];

function log(message) {
  process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function parseArgs(argv) {
  const only = argv.find((arg) => arg.startsWith('--only='));
  const phases = only ? only.slice('--only='.length).split(',') : PHASES;
  for (const phase of phases) if (!PHASES.includes(phase)) throw new Error(`unknown phase ${phase}; phases: ${PHASES.join(', ')}`);
  return { phases: PHASES.filter((phase) => phases.includes(phase)) };
}

export async function main(argv = process.argv.slice(2)) {
  const { phases } = parseArgs(argv);
  const config = settings();
  const startedAt = new Date().toISOString();
  const extraEnv = process.env.BENCH_SKIP_BUILD ? { STACK_SKIP_BUILD: '1' } : {};
  let stack = null;
  let redis = null;
  let interrupted = false;
  const onSignal = (signal) => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping`);
    void (async () => {
      redis?.disconnect();
      await stack?.stop();
      process.exit(130);
    })();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const results = {
    date: startedAt,
    machine: machine(),
    settings: config,
    phases,
    startupSeconds: null,
    figures: {},
  };
  let exitCode = 0;
  try {
    stack = await startStack({ log, extraEnv });
    results.startupSeconds = stack.startupSeconds === null ? null : Number(stack.startupSeconds.toFixed(1));
    results.replicationMode = stack.replicationMode;
    const topology = await clusterOf(stack);
    results.topology = {
      shards: topology.shards.length,
      replicasPerShard: topology.shards[0].replicas.length,
      readers: stack.inventory.services.readers.length,
    };
    redis = redisOf(stack);
    const memory = new MemoryWatch(stack);
    const warmCodes = 1000;
    let codes = [];
    let warm = [];
    if (phases.includes('miss') || phases.includes('hit')) {
      const t = performance.now();
      const seeded = await seedLinks(stack, topology, config.missCodes + warmCodes);
      codes = seeded.slice(warmCodes);
      log(`seeded ${seeded.length} links straight into the primaries in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      results.seededLinks = seeded.length;
      warm = seeded.slice(0, warmCodes);
    }
    const ctx = { stack, topology, redis, codes, warmCodes: warm, config, log, memory };
    const run = async (key, scenario) => {
      try {
        results.figures[key] = await scenario(ctx);
      } catch (error) {
        log(`${key} failed: ${error.stack ?? error}`);
        results.figures[key] = { error: String(error.message ?? error), pass: false };
      }
    };
    if (phases.includes('miss')) await run('redirectCacheMiss', redirectCacheMiss);
    if (phases.includes('hit')) await run('redirectCacheHit', redirectCacheHit);
    if (phases.includes('create')) await run('create', create);
    // memory is judged on the load phases before the failover (which kills a node)
    results.memory = memoryFigure(memory.peakMb);
    if (phases.includes('failover')) await run('failover', failover);
    if (phases.includes('reshard')) await run('reshard', reshard);
  } catch (error) {
    log(`bench failed: ${error.stack ?? error}`);
    results.error = String(error.message ?? error);
    exitCode = 1;
  } finally {
    redis?.disconnect();
    if (stack && !interrupted) await stack.stop();
  }
  if (interrupted) return;

  const f = results.figures;
  // Requests per core count the CPU of the whole stack, whichever process did the work.
  const STACK_PROCESSES = ['gateway', 'redis', 'readers', 'writer', 'monitors', 'kafka', 'postgres'];
  results.perCore = {
    'reads, cache hit': perCore(f.redirectCacheHit, STACK_PROCESSES),
    'reads, cache miss': perCore(f.redirectCacheMiss, STACK_PROCESSES),
    writes: perCore(f.create, STACK_PROCESSES),
    designClaim: { readsPerSecondPerDatabase: 5000, writesPerSecondPerDatabase: 1000 },
  };
  const loads = [
    ['redirect, cache hit', f.redirectCacheHit?.subject],
    ['redirect, cache miss', f.redirectCacheMiss?.subject],
    ['create', f.create?.subject],
  ].filter(([, s]) => s);
  const reshardErrors = f.reshard?.errors ? [['reshard', { errors: f.reshard.errors.total, errorDetail: f.reshard.errors }]] : [];
  results.errorsUnderLoad = {
    total: [...loads, ...reshardErrors].reduce((sum, [, s]) => sum + s.errors, 0),
    byFigure: Object.fromEntries([...loads, ...reshardErrors].map(([name, s]) => [name, s.errorDetail])),
    target: 0,
  };
  results.generatorCpu = [
    ...['redirectCacheHit', 'redirectCacheMiss', 'create'].flatMap((key) =>
      f[key]?.subject
        ? [
            [`${key} ref`, f[key].reference.generatorCpu.cores],
            [`${key}`, f[key].subject.generatorCpu.cores],
          ]
        : [],
    ),
    ...(f.reshard?.load?.hit ? [['reshard hits', f.reshard.load.hit.generatorCpu.cores]] : []),
    ...(f.reshard?.load?.create ? [['reshard creates', f.reshard.load.create.generatorCpu.cores]] : []),
  ];
  results.machine.loadAverageAtEnd = os.loadavg().map((load) => Number(load.toFixed(2)));
  results.finishedAt = new Date().toISOString();
  const file = writeResults(results);
  process.stdout.write(`\n${table(results)}\n\nresults: ${file}\n`);
  // a missed target is a result, not a failure of the bench (BENCH_STRICT=1 makes it one)
  const missed = Object.values(f).some((figure) => figure && figure.pass === false);
  process.exitCode = exitCode || (missed && process.env.BENCH_STRICT === '1' ? 1 : 0);
}
