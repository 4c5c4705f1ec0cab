// The figures of docs/reference.md section 6. Every figure measures its reference and the
// subject back to back, with the same generator, concurrency and requests.
import { childrenOf, CpuMeter, rssMb } from './procfs.mjs';
import { runLoad, startLoad, summarize } from './load.mjs';
import { startReference } from './references.mjs';
import { cachedCount, clusterOf, databaseNow, evict, presentCount, rowsBySlot, seedLinks, shardRing, slotOf } from './fixtures.mjs';
import { postmasterPid, stackPids } from './stack.mjs';

const REDIRECT = new Set([301, 302, 307, 308]);
const CREATED = new Set([201]);
const CREATE_BODY = JSON.stringify({
  url: 'https://example.com/a/fairly/ordinary/landing-page?utm_source=bench',
});
const JSON_HEADERS = { 'content-type': 'application/json' };

export function settings(env = process.env) {
  const number = (name, fallback) => (env[name] ? Number(env[name]) : fallback);
  return {
    connections: number('BENCH_CONNECTIONS', 32),
    seconds: number('BENCH_SECONDS', 8),
    rounds: number('BENCH_ROUNDS', 4),
    warmupSeconds: number('BENCH_WARMUP_SECONDS', 2),
    missCodes: number('BENCH_MISS_CODES', 20_000),
    hitCodes: number('BENCH_HIT_CODES', 2000),
    failoverConnections: number('BENCH_FAILOVER_CONNECTIONS', 16),
    failoverTimeoutSeconds: number('BENCH_FAILOVER_TIMEOUT_SECONDS', 40),
    reshardLinks: number('BENCH_RESHARD_LINKS', 200_000),
    reshardBaselineSeconds: number('BENCH_RESHARD_BASELINE_SECONDS', 5),
    reshardCreateConnections: number('BENCH_RESHARD_CREATE_CONNECTIONS', 8),
    reshardTimeoutSeconds: number('BENCH_RESHARD_TIMEOUT_SECONDS', 900),
  };
}

/** CPU groups of the stack (and of a reference server, when one runs). */
function cpuGroups(stack, reference) {
  const pids = stackPids(stack.stackDir);
  const named = (prefix) => () =>
    Object.entries(pids)
      .filter(([name]) => name.startsWith(prefix))
      .map(([, pid]) => pid);
  const postmasters = () => stack.inventory.shards.flatMap((shard) => shard.nodes.map((node) => postmasterPid(stack.stackDir, node.name))).filter(Boolean);
  return {
    gateway: named('gateway'),
    writer: named('writer'),
    readers: named('reader-'),
    monitors: named('monitor-'),
    redis: named('redis'),
    kafka: named('kafka'),
    postgres: () => {
      const masters = postmasters();
      return [...masters, ...childrenOf(masters)];
    },
    reference: () => (reference ? [reference.pid] : []),
  };
}

/** Highest VmRSS of every stack process seen while `phase` runs (sampled every 500 ms). */
export class MemoryWatch {
  constructor(stack) {
    this.stack = stack;
    this.peakMb = {};
  }

  sample() {
    for (const [name, pid] of Object.entries(stackPids(this.stack.stackDir))) {
      if (name === 'launcher') continue;
      const mb = rssMb(pid);
      if (mb !== null) this.peakMb[name] = Math.max(this.peakMb[name] ?? 0, mb);
    }
  }

  async during(phase) {
    this.sample();
    const timer = setInterval(() => this.sample(), 500);
    try {
      return await phase();
    } finally {
      clearInterval(timer);
      this.sample();
    }
  }
}

/** One measured phase with CPU accounting of the stack and the reference. */
async function measured(ctx, reference, load) {
  const meter = new CpuMeter(cpuGroups(ctx.stack, reference));
  meter.begin();
  const result = await ctx.memory.during(() => runLoad(load));
  const cpu = meter.end();
  result.cpuCores = Object.fromEntries(Object.entries(cpu.cores).map(([name, cores]) => [name, Number(cores.toFixed(3))]));
  return result;
}

// The processes a request of the subject, or of its reference, runs through: their CPU
// per request is compared (Kafka and the monitors are background work and not counted).
const PATHS = {
  hit: { subject: ['gateway', 'redis'], reference: ['reference', 'redis'] },
  miss: {
    subject: ['gateway', 'readers', 'redis', 'postgres'],
    reference: ['reference', 'postgres'],
  },
  create: {
    subject: ['gateway', 'writer', 'redis', 'postgres'],
    reference: ['reference', 'postgres'],
  },
};

/** Merges the rounds of one side: totals, and percentiles weighted by requests. */
function merge(rounds, path) {
  const completed = rounds.reduce((sum, r) => sum + r.completed, 0);
  const seconds = rounds.reduce((sum, r) => sum + r.seconds, 0);
  const weighted = (pick) => Number((rounds.reduce((sum, r) => sum + pick(r) * r.completed, 0) / Math.max(1, completed)).toFixed(2));
  const statuses = {};
  for (const r of rounds) for (const [status, count] of Object.entries(r.errorDetail.statuses)) statuses[status] = (statuses[status] ?? 0) + count;
  const cpuCores = {};
  for (const r of rounds) for (const [name, cores] of Object.entries(r.cpuCores)) cpuCores[name] = (cpuCores[name] ?? 0) + (cores * r.seconds) / seconds;
  for (const name of Object.keys(cpuCores)) cpuCores[name] = Number(cpuCores[name].toFixed(3));
  const pathCpuSeconds = path.reduce((sum, name) => sum + (cpuCores[name] ?? 0), 0) * seconds;
  const generatorCpuSeconds = rounds.reduce((sum, r) => sum + (r.generatorCpu.userMs + r.generatorCpu.systemMs) / 1000, 0);
  return {
    requestsPerSecond: Number((completed / seconds).toFixed(1)),
    latencyMs: {
      p50: weighted((r) => r.latencyMs.p50),
      p99: weighted((r) => r.latencyMs.p99),
      mean: weighted((r) => r.latencyMs.mean),
      max: Math.max(...rounds.map((r) => r.latencyMs.max)),
    },
    completed,
    ok: rounds.reduce((sum, r) => sum + r.ok, 0),
    errors: rounds.reduce((sum, r) => sum + r.errors, 0),
    errorDetail: {
      socketErrors: rounds.reduce((sum, r) => sum + r.errorDetail.socketErrors, 0),
      timeouts: rounds.reduce((sum, r) => sum + r.errorDetail.timeouts, 0),
      unexpectedStatus: rounds.reduce((sum, r) => sum + r.errorDetail.unexpectedStatus, 0),
      statuses,
    },
    seconds: Number(seconds.toFixed(2)),
    rounds: rounds.map((r) => ({
      requestsPerSecond: r.requestsPerSecond,
      p50: r.latencyMs.p50,
      p99: r.latencyMs.p99,
      errors: r.errors,
    })),
    generatorCpu: {
      seconds: Number(generatorCpuSeconds.toFixed(2)),
      cores: Number((generatorCpuSeconds / seconds).toFixed(2)),
    },
    cpuCores,
    cpuPath: path,
    cpuMsPerRequest: completed > 0 ? Number(((pathCpuSeconds * 1000) / completed).toFixed(3)) : null,
  };
}

/**
 * Reference and subject alternate (A B A B ...) in `rounds` slices, so that a burst of
 * other work on the machine hits both sides alike; `load(side, round)` builds each slice.
 */
async function alternating(ctx, reference, rounds, paths, load) {
  const sides = { reference: [], subject: [] };
  for (let round = 0; round < rounds; round++) {
    sides.reference.push(await measured(ctx, reference, load('reference', round)));
    sides.subject.push(await measured(ctx, null, load('subject', round)));
  }
  return {
    reference: merge(sides.reference, paths.reference),
    subject: merge(sides.subject, paths.subject),
  };
}

/**
 * The ratios of a timed figure and its verdict: requests/s at least `minRatio` of the
 * reference's (and, with `maxP99Ratio`, p99 at most that multiple of it), no errors.
 */
function judged(subject, reference, { minRatio, maxP99Ratio = null }) {
  const rpsRatio = ratio(subject.requestsPerSecond, reference.requestsPerSecond);
  const p99Ratio = ratio(subject.latencyMs.p99, reference.latencyMs.p99);
  const p99Ok = maxP99Ratio === null || (p99Ratio !== null && p99Ratio <= maxP99Ratio);
  return {
    ratio: rpsRatio,
    p99Ratio,
    cpuPerRequestRatio: ratio(subject.cpuMsPerRequest, reference.cpuMsPerRequest),
    target: `requests/s >= ${minRatio}x reference` + (maxP99Ratio === null ? '' : `; p99 <= ${maxP99Ratio}x reference`),
    pass: rpsRatio !== null && rpsRatio >= minRatio && p99Ok && subject.errors === 0,
  };
}

function cycling(codes, prefix = '/') {
  let next = 0;
  return [
    {
      method: 'GET',
      setupRequest: (request) => {
        request.path = `${prefix}${codes[next++ % codes.length]}`;
        return request;
      },
    },
  ];
}

function eachOnce(codes) {
  let next = 0;
  return [
    {
      method: 'GET',
      setupRequest: (request) => {
        // modulo: autocannon builds a connection's next request before it knows the
        // amount is reached, so a few more are built than sent
        request.path = `/${codes[next++ % codes.length]}`;
        return request;
      },
    },
  ];
}

const ratio = (a, b) => (b > 0 ? Number((a / b).toFixed(2)) : null);

/** Redirect, cache hit: gateway vs node:http + one Redis GET. */
export async function redirectCacheHit(ctx) {
  const { stack, redis, codes, log, config } = ctx;
  const hot = codes.slice(0, config.hitCodes);
  let cached = await cachedCount(redis, hot);
  if (cached < hot.length) {
    log(`cache hit: ${hot.length - cached} of ${hot.length} codes not cached yet, filling through the gateway`);
    await runLoad({
      url: stack.baseUrl,
      connections: 8,
      amount: hot.length,
      requests: eachOnce(hot),
      expect: REDIRECT,
    });
    await new Promise((r) => setTimeout(r, 500));
    cached = await cachedCount(redis, hot);
  }
  const floor = await startReference('redisFloor', ctx);
  try {
    const load = (url, duration) => ({
      url,
      connections: config.connections,
      duration,
      requests: cycling(hot),
      expect: REDIRECT,
    });
    log(`cache hit: warm-up ${config.warmupSeconds} s each`);
    await runLoad(load(floor.url, config.warmupSeconds));
    await runLoad(load(stack.baseUrl, config.warmupSeconds));
    const slice = config.seconds / config.rounds;
    log(`cache hit: reference (node:http + Redis GET) and gateway alternating, ${config.rounds} x ${slice} s each, ${config.connections} connections`);
    const { reference, subject } = await alternating(ctx, floor, config.rounds, PATHS.hit, (side) =>
      load(side === 'reference' ? floor.url : stack.baseUrl, slice),
    );
    return {
      figure: 'redirect, cache hit',
      codes: hot.length,
      cachedBefore: cached,
      subject,
      reference: { what: 'node:http + one ioredis GET + 302 (child process)', ...reference },
      ...judged(subject, reference, { minRatio: 0.8, maxP99Ratio: 2 }),
    };
  } finally {
    await floor.stop();
  }
}

/** Redirect, cache miss: every code once, none cached; gateway vs a pg SELECT on a replica. */
export async function redirectCacheMiss(ctx) {
  const { stack, redis, codes, warmCodes, log, config } = ctx;
  const select = await startReference('pgSelect', ctx);
  try {
    log(`cache miss: warm-up on ${warmCodes.length} other codes`);
    await evict(redis, warmCodes);
    await runLoad({
      url: select.url,
      connections: config.connections,
      amount: warmCodes.length,
      requests: eachOnce(warmCodes),
      expect: REDIRECT,
    });
    await runLoad({
      url: stack.baseUrl,
      connections: config.connections,
      amount: warmCodes.length,
      requests: eachOnce(warmCodes),
      expect: REDIRECT,
    });
    const chunk = Math.ceil(codes.length / config.rounds);
    const chunks = Array.from({ length: config.rounds }, (_, i) => codes.slice(i * chunk, (i + 1) * chunk));
    await evict(redis, codes);
    const cachedBefore = await cachedCount(redis, codes);
    log(
      `cache miss: reference (node:http + pg SELECT on a replica) and gateway alternating on ${config.rounds} slices of ${chunk} codes, each code once per side (${cachedBefore} cached), ${config.connections} connections`,
    );
    const { reference, subject } = await alternating(ctx, select, config.rounds, PATHS.miss, (side, round) => ({
      url: side === 'reference' ? select.url : stack.baseUrl,
      connections: config.connections,
      amount: chunks[round].length,
      requests: eachOnce(chunks[round]),
      expect: REDIRECT,
    }));
    return {
      figure: 'redirect, cache miss',
      codes: codes.length,
      cachedBefore,
      subject,
      reference: {
        what: 'node:http + one pg primary-key SELECT on a replica of the owning shard + 302 (child process)',
        ...reference,
      },
      ...judged(subject, reference, { minRatio: 0.6 }),
    };
  } finally {
    await select.stop();
  }
}

/** Create: POST /api/urls vs a single-row pg INSERT on the owning primary. */
export async function create(ctx) {
  const { stack, log, config } = ctx;
  const insert = await startReference('pgInsert', ctx);
  try {
    const load = (url, duration) => ({
      url: `${url}/api/urls`,
      connections: config.connections,
      duration,
      requests: [{ method: 'POST', path: '/api/urls', headers: JSON_HEADERS, body: CREATE_BODY }],
      expect: CREATED,
    });
    log(`create: warm-up ${Math.max(1, config.warmupSeconds / 2)} s each`);
    await runLoad(load(insert.url, Math.max(1, config.warmupSeconds / 2)));
    await runLoad(load(stack.baseUrl, Math.max(1, config.warmupSeconds / 2)));
    const slice = config.seconds / config.rounds;
    log(
      `create: reference (node:http + pg INSERT on the owning primary, ${stack.replicationMode}) and gateway alternating, ${config.rounds} x ${slice} s each, ${config.connections} connections`,
    );
    const { reference, subject } = await alternating(ctx, insert, config.rounds, PATHS.create, (side) =>
      load(side === 'reference' ? insert.url : stack.baseUrl, slice),
    );
    return {
      figure: 'create',
      replicationMode: stack.replicationMode,
      subject,
      reference: {
        what: `node:http + one pg INSERT on the owning primary (${stack.replicationMode} commit) + 201 (child process)`,
        ...reference,
      },
      ...judged(subject, reference, { minRatio: 0.6 }),
    };
  } finally {
    await insert.stop();
  }
}

/**
 * Failover: creates under load, kill -9 of shard 0's primary (the postmaster and its
 * processes, as a crashed host), then the time to the first 201 whose code lands on that
 * shard among requests sent after the kill.
 */
export async function failover(ctx) {
  const { stack, log, config } = ctx;
  const before = await clusterOf(stack);
  const shardOf = shardRing(before.ring.slots);
  const shard = 0;
  const victim = before.shards[shard].primary;
  let killedAt = null;
  let recoveredAt = null;
  let firstSameShardFailure = null;
  const statusesAfterKill = {};
  const instance = startLoad({
    url: `${stack.baseUrl}/api/urls`,
    connections: config.failoverConnections,
    duration: config.failoverTimeoutSeconds + 5,
    timeoutSeconds: 10,
    requests: [
      {
        method: 'POST',
        path: '/api/urls',
        headers: JSON_HEADERS,
        body: CREATE_BODY,
        setupRequest: (request, context) => {
          context.sentAt = performance.now();
          return request;
        },
        onResponse: (status, body, context) => {
          if (killedAt === null || context.sentAt === undefined || context.sentAt < killedAt) return;
          statusesAfterKill[status] = (statusesAfterKill[status] ?? 0) + 1;
          if (status !== 201) {
            if (firstSameShardFailure === null) firstSameShardFailure = performance.now();
            return;
          }
          if (recoveredAt !== null) return;
          try {
            if (shardOf(JSON.parse(body).code) === shard) recoveredAt = performance.now();
          } catch {
            /* not JSON: ignored */
          }
        },
      },
    ],
  });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const finished = new Promise((done) => instance.on('done', done));
  let promotedAt = null;
  let after = null;
  try {
    await new Promise((r) => setTimeout(r, 3000));
    const postmaster = postmasterPid(stack.stackDir, victim.name);
    if (!postmaster) throw new Error(`no postmaster.pid for ${victim.name}`);
    const processes = [postmaster, ...childrenOf([postmaster])];
    log(`failover: kill -9 of ${victim.name} (shard ${shard} primary, postmaster ${postmaster}, ${processes.length} processes) under create load`);
    killedAt = performance.now();
    for (const pid of processes) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    const deadline = killedAt + config.failoverTimeoutSeconds * 1000;
    while (performance.now() < deadline && (recoveredAt === null || promotedAt === null)) {
      await new Promise((r) => setTimeout(r, 200));
      if (promotedAt === null) {
        try {
          const now = await clusterOf(stack);
          if (now.shards[shard].primary.name !== victim.name) {
            promotedAt = performance.now();
            after = now;
          }
        } catch {
          /* the admin API is best effort here */
        }
      }
    }
    // a little load after the recovery shows the shard is writable again
    if (recoveredAt !== null) await new Promise((r) => setTimeout(r, 1000));
  } finally {
    instance.stop();
  }
  const result = await finished;
  const wall = (performance.now() - t0) / 1000;
  const load = summarize(result, {
    wall,
    cpu: process.cpuUsage(cpu0),
    expect: new Set([201, 503]),
  });
  const seconds = recoveredAt === null ? null : Number(((recoveredAt - killedAt) / 1000).toFixed(2));
  const failover = after?.failovers?.filter((f) => f.shard === shard).at(-1) ?? null;
  log(
    `failover: ${seconds === null ? `no acknowledged create on shard ${shard} within ${config.failoverTimeoutSeconds} s` : `first acknowledged create on shard ${shard} ${seconds} s after the kill`}`,
  );
  return {
    figure: 'failover',
    shard,
    killed: victim.name,
    promoted: after?.shards?.[shard]?.primary?.name ?? null,
    seconds,
    topologyChangedAfterSeconds: promotedAt === null ? null : Number(((promotedAt - killedAt) / 1000).toFixed(2)),
    monitorReportedDurationMs: failover?.durationMs ?? null,
    firstFailureAfterSeconds: firstSameShardFailure === null ? null : Number(((firstSameShardFailure - killedAt) / 1000).toFixed(2)),
    statusesAfterKill,
    load,
    target: '<= 10 s',
    pass: seconds !== null && seconds <= 10,
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function adminFetch(stack, path, init = {}) {
  const response = await fetch(`${stack.baseUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${stack.adminToken}`, ...JSON_HEADERS, ...(init.headers ?? {}) },
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: response.status, headers: response.headers, body };
}

/** Every primary of the cluster healthy (after the failover phase the new one must have settled). */
async function settledCluster(stack, log, timeoutMs = 60_000) {
  const deadline = performance.now() + timeoutMs;
  let cluster = await clusterOf(stack);
  while (!cluster.shards.every((shard) => shard.primary.healthy) && performance.now() < deadline) {
    await sleep(1000);
    cluster = await clusterOf(stack).catch(() => cluster);
  }
  const unhealthy = cluster.shards.filter((shard) => !shard.primary.healthy).map((shard) => shard.primary.name);
  if (unhealthy.length) log(`reshard: primaries not reported healthy after ${timeoutMs / 1000} s: ${unhealthy.join(', ')} (going on)`);
  return cluster;
}

const headerOf = (headers, name) => {
  if (!headers) return undefined;
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value;
  return undefined;
};

/**
 * Resharding (docs/reference.md sections 6 and 7): BENCH_RESHARD_LINKS links seeded straight
 * into the primaries, then shard N added (POST /api/cluster/shards, body {}) while cache-hit
 * redirects (as the hit figure: BENCH_HIT_CODES hot codes, BENCH_CONNECTIONS connections)
 * and creates (BENCH_RESHARD_CREATE_CONNECTIONS connections) run. Reports rows moved and
 * rows moved per second, the total time, the operation's longest write pause of a slot, the
 * share of rows moved against the rows of the slots that changed owner, the errors (a 503
 * with Retry-After to a create while the operation runs is the write fence, allowed) and the
 * hit requests/s during the move as a ratio of before it (the create load runs in both).
 * It changes the topology for good: it runs last.
 */
export async function reshard(ctx) {
  const { stack, log, config, redis } = ctx;
  const before = await settledCluster(stack, log);
  const shardsBefore = before.shards.map((shard) => shard.id);

  // 1. the links, straight into the primaries (INSERT ... SELECT unnest, 5,000 a statement)
  const t = performance.now();
  const seeded = await seedLinks(stack, before, config.reshardLinks, { prefix: 'r' });
  const seedSeconds = (performance.now() - t) / 1000;
  log(`reshard: seeded ${seeded.length} links straight into the primaries of shards ${shardsBefore.join(', ')} in ${seedSeconds.toFixed(1)} s`);

  // 2. the hot codes of the hit load, cached through the gateway (as the hit figure)
  const hot = seeded.slice(0, Math.min(config.hitCodes, seeded.length));
  await runLoad({ url: stack.baseUrl, connections: 8, amount: hot.length, requests: eachOnce(hot), expect: REDIRECT });
  await sleep(500);
  const hotCached = await cachedCount(redis, hot);

  // 3. the rows before, per slot; `since` (the databases' clock) separates them from the
  //    rows the create load adds from here on
  const since = await databaseNow(stack, before.shards[0].primary);
  const countsBefore = await rowsBySlot(stack, before, since);
  const slotRowsBefore = new Array(1024).fill(0);
  const rowsBeforeByShard = {};
  for (const [id, slots] of Object.entries(countsBefore)) {
    rowsBeforeByShard[id] = 0;
    for (const [slot, { before: n }] of slots) {
      slotRowsBefore[slot] += n;
      rowsBeforeByShard[id] += n;
    }
  }
  const rowsBefore = slotRowsBefore.reduce((a, b) => a + b, 0);
  log(
    `reshard: ${rowsBefore} rows before (${Object.entries(rowsBeforeByShard)
      .map(([id, n]) => `shard ${id} ${n}`)
      .join(', ')})`,
  );

  // 4. the loads: hits from here to the end, creates from after the hit-alone window
  const moving = { running: false };
  const hits = { total: 0, bad: 0, statuses: {} };
  const creates = { total: 0, created: 0, fence503: 0, other: 0, statuses: {}, codes: [] };
  const hitInstance = startLoad({
    url: stack.baseUrl,
    connections: config.connections,
    duration: config.reshardTimeoutSeconds + 600,
    requests: cycling(hot),
  });
  hitInstance.on('response', (client, status) => {
    hits.total++;
    hits.statuses[status] = (hits.statuses[status] ?? 0) + 1;
    if (!REDIRECT.has(status)) hits.bad++;
  });
  const hitCpu0 = process.cpuUsage();
  const hitT0 = performance.now();
  const hitDone = new Promise((done) => hitInstance.on('done', done));
  let createInstance = null;
  let createDone = null;
  let createT0 = null;
  let createCpu0 = null;
  const windows = {};
  const snapshot = () => ({ at: performance.now(), hits: hits.total, creates: creates.total, created: creates.created });
  const rate = (a, b, key) => Number(((b[key] - a[key]) / ((b.at - a.at) / 1000)).toFixed(1));
  let operation = null;
  let accepted = null;
  let postedAt = null;
  let finishedAt = null;
  let copyStartedAt = null;
  const samples = [];
  let failure = null;
  try {
    log(
      `reshard: hit load (${hot.length} hot codes, ${hot.length - hotCached} not cached, ${config.connections} connections): warm-up ${config.warmupSeconds} s, then ${config.reshardBaselineSeconds} s alone`,
    );
    await sleep(config.warmupSeconds * 1000);
    let mark = snapshot();
    await sleep(config.reshardBaselineSeconds * 1000);
    windows.hitAlone = { from: mark, to: snapshot() };

    createInstance = startLoad({
      url: `${stack.baseUrl}/api/urls`,
      connections: config.reshardCreateConnections,
      duration: config.reshardTimeoutSeconds + 600,
      requests: [
        {
          method: 'POST',
          path: '/api/urls',
          headers: JSON_HEADERS,
          body: CREATE_BODY,
          onResponse: (status, body, context, headers) => {
            creates.total++;
            creates.statuses[status] = (creates.statuses[status] ?? 0) + 1;
            if (status === 201) {
              creates.created++;
              try {
                creates.codes.push(JSON.parse(body).code);
              } catch {
                creates.other++; // a 201 without a code: counted as an error
              }
            } else if (status === 503 && headerOf(headers, 'retry-after') !== undefined && moving.running) {
              creates.fence503++;
            } else {
              creates.other++;
            }
          },
        },
      ],
    });
    createCpu0 = process.cpuUsage();
    createT0 = performance.now();
    createDone = new Promise((done) => createInstance.on('done', done));
    log(
      `reshard: create load (${config.reshardCreateConnections} connections) added; 1 s to settle, then ${config.reshardBaselineSeconds} s of the baseline (hits + creates)`,
    );
    await sleep(1000);
    mark = snapshot();
    await sleep(config.reshardBaselineSeconds * 1000);
    windows.before = { from: mark, to: snapshot() };

    // 5. the move
    moving.running = true;
    postedAt = performance.now();
    for (let attempt = 0; ; attempt++) {
      const answer = await adminFetch(stack, '/api/cluster/shards', { method: 'POST', body: '{}' });
      if (answer.status === 202) {
        accepted = answer;
        break;
      }
      if (answer.status === 503 && attempt < 10) {
        await sleep(1000 * Number(answer.headers.get('retry-after') || 1));
        continue;
      }
      throw new Error(`POST /api/cluster/shards answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    }
    operation = accepted.body;
    const location = accepted.headers.get('location') ?? `/api/cluster/operations/${encodeURIComponent(operation.id)}`;
    const moveFrom = snapshot();
    log(`reshard: ${operation.type} ${operation.shard} accepted (operation ${operation.id}), under load; polling ${location}`);
    const deadline = postedAt + config.reshardTimeoutSeconds * 1000;
    let last = moveFrom;
    let lastLine = '';
    while (operation.state === 'running' && performance.now() < deadline) {
      await sleep(500);
      const answer = await adminFetch(stack, location).catch((error) => ({ status: 0, body: String(error) }));
      if (answer.status === 200) operation = answer.body;
      if (copyStartedAt === null && operation.phase !== 'provision') copyStartedAt = performance.now();
      const now = snapshot();
      if (now.at - last.at >= 1000 || operation.state !== 'running') {
        samples.push({
          second: Number(((now.at - postedAt) / 1000).toFixed(1)),
          phase: operation.phase,
          slotsMoved: operation.slots?.moved ?? null,
          rowsCopied: operation.rows?.copied ?? null,
          hitRps: rate(last, now, 'hits'),
          createRps: rate(last, now, 'creates'),
        });
        last = now;
      }
      const line = `${operation.state}, ${operation.phase}, slots ${operation.slots?.moved}/${operation.slots?.total}, rows copied ${operation.rows?.copied}`;
      if (line !== lastLine) {
        log(`reshard: ${line}`);
        lastLine = line;
      }
    }
    finishedAt = performance.now();
    windows.during = { from: moveFrom, to: snapshot() };
    if (operation.state === 'running')
      throw new Error(`operation ${operation.id} still running after ${config.reshardTimeoutSeconds} s (BENCH_RESHARD_TIMEOUT_SECONDS)`);
    if (operation.state !== 'done') throw new Error(`operation ${operation.id} ${operation.state}: ${operation.error ?? 'no error given'}`);
  } catch (error) {
    failure = error;
  } finally {
    // a fence 503 only counts as allowed while the operation runs, plus the second its last answers take
    await sleep(1000);
    moving.running = false;
    createInstance?.stop();
    hitInstance.stop();
  }
  const hitResult = summarize(await hitDone, { wall: (performance.now() - hitT0) / 1000, cpu: process.cpuUsage(hitCpu0), expect: REDIRECT });
  const createResult = createDone
    ? summarize(await createDone, { wall: (performance.now() - createT0) / 1000, cpu: process.cpuUsage(createCpu0), expect: CREATED })
    : null;
  const hitWindow = (w) => (w ? rate(w.from, w.to, 'hits') : null);
  const createWindow = (w) => (w ? rate(w.from, w.to, 'creates') : null);
  const errors = {
    // non-30x redirects, socket errors and timeouts of the hit load
    redirects: hits.bad + hitResult.errorDetail.socketErrors + hitResult.errorDetail.timeouts,
    // creates: anything but 201 and a fence's 503 + Retry-After while the operation ran
    creates: createResult ? creates.other + createResult.errorDetail.socketErrors + createResult.errorDetail.timeouts : 0,
  };
  errors.total = errors.redirects + errors.creates;
  const figure = {
    figure: 'reshard',
    links: { seeded: seeded.length, seedSeconds: Number(seedSeconds.toFixed(1)), rowsBefore, rowsBeforeByShard },
    shardsBefore,
    operation,
    hitCodes: hot.length,
    load: {
      hitConnections: config.connections,
      createConnections: config.reshardCreateConnections,
      hitRequestsPerSecond: {
        alone: hitWindow(windows.hitAlone),
        before: hitWindow(windows.before),
        during: hitWindow(windows.during),
      },
      createRequestsPerSecond: { before: createWindow(windows.before), during: createWindow(windows.during) },
      hit: { ...hitResult, statuses: hits.statuses },
      create: createResult ? { ...createResult, statuses: creates.statuses, created: creates.created, fence503WithRetryAfter: creates.fence503 } : null,
      samples,
    },
    errors,
  };
  figure.hitRatio = ratio(figure.load.hitRequestsPerSecond.during, figure.load.hitRequestsPerSecond.before);
  figure.hitRatioToHitAlone = ratio(figure.load.hitRequestsPerSecond.during, figure.load.hitRequestsPerSecond.alone);
  figure.target =
    "longest write pause < 1000 ms; rows moved = the handed-over slots' rows exactly; errors 0 (503 + Retry-After allowed in a fence); hit req/s during >= 0.7x before";
  if (failure) {
    log(`reshard failed: ${failure.stack ?? failure}`);
    return { ...figure, error: String(failure.message ?? failure), pass: false };
  }

  // 6. what moved: the slots that changed owner, the rows on the new shard
  const after = await clusterOf(stack);
  const newShard = operation.shard;
  const handedOver = [];
  for (let slot = 0; slot < 1024; slot++) if (before.ring.slots[slot] !== after.ring.slots[slot]) handedOver.push(slot);
  const toOthers = handedOver.filter((slot) => after.ring.slots[slot] !== newShard).length;
  const expectedRows = handedOver.reduce((sum, slot) => sum + slotRowsBefore[slot], 0);
  const countsAfter = await rowsBySlot(stack, after, since);
  let rowsOnNewShard = 0;
  let movedRowsFromBefore = 0;
  let leftover = 0; // rows in a slot the shard no longer owns (old copies not cleaned up)
  let ownedFromBefore = 0;
  for (const [id, slots] of Object.entries(countsAfter)) {
    for (const [slot, { rows, before: old }] of slots) {
      if (Number(id) === newShard) {
        rowsOnNewShard += rows;
        movedRowsFromBefore += old;
      }
      if (after.ring.slots[slot] === Number(id)) ownedFromBefore += old;
      else leftover += rows;
    }
  }
  // every acknowledged create is on the shard that owns its code now
  const ownerOf = shardRing(after.ring.slots);
  const createdBy = new Map(after.shards.map((shard) => [shard.id, []]));
  for (const code of creates.codes) createdBy.get(ownerOf(code))?.push(code);
  let createdFound = 0;
  for (const shard of after.shards) createdFound += await presentCount(stack, shard.primary, createdBy.get(shard.id));
  const handedOverSet = new Set(handedOver);
  const createdInHandedOver = creates.codes.filter((code) => handedOverSet.has(slotOf(code))).length;

  const durationSeconds = (Date.parse(operation.finishedAt) - Date.parse(operation.startedAt)) / 1000;
  const totalSeconds = (finishedAt - postedAt) / 1000;
  const copySeconds = copyStartedAt === null ? null : (finishedAt - copyStartedAt) / 1000;
  const share = rowsBefore > 0 ? movedRowsFromBefore / rowsBefore : null;
  const expectedShare = rowsBefore > 0 ? expectedRows / rowsBefore : null;
  const rows = {
    moved: rowsOnNewShard,
    movedFromBefore: movedRowsFromBefore,
    expectedFromBefore: expectedRows,
    createdDuringInHandedOverSlots: createdInHandedOver,
    copiedByOperation: operation.rows?.copied ?? null,
    verifiedByOperation: operation.rows?.verified ?? null,
    share: share === null ? null : Number(share.toFixed(4)),
    expectedShare: expectedShare === null ? null : Number(expectedShare.toFixed(4)),
    exact: movedRowsFromBefore === expectedRows,
    rowsFromBeforeOnTheirOwner: ownedFromBefore,
    leftoverOnOldOwners: leftover,
    acknowledgedCreates: creates.codes.length,
    acknowledgedCreatesFound: createdFound,
  };
  const rowsPerSecond = durationSeconds > 0 ? rowsOnNewShard / durationSeconds : null;
  const result = {
    ...figure,
    shard: newShard,
    shardsAfter: after.shards.map((shard) => shard.id),
    slots: { handedOver: handedOver.length, toOtherShards: toOthers, expected: Math.floor(1024 / (shardsBefore.length + 1)) },
    rows,
    rowsPerSecond: rowsPerSecond === null ? null : Math.round(rowsPerSecond),
    rowsPerSecondOfCopy: copySeconds > 0 ? Math.round(rowsOnNewShard / copySeconds) : null,
    operationSeconds: Number(durationSeconds.toFixed(2)),
    totalSeconds: Number(totalSeconds.toFixed(2)),
    provisionSeconds: copyStartedAt === null ? null : Number(((copyStartedAt - postedAt) / 1000).toFixed(2)),
    maxWritePauseMs: operation.maxWritePauseMs ?? null,
  };
  const conserved = ownedFromBefore === rowsBefore && leftover === 0 && createdFound === creates.codes.length;
  result.pass =
    result.maxWritePauseMs !== null &&
    result.maxWritePauseMs < 1000 &&
    rows.exact &&
    conserved &&
    errors.total === 0 &&
    result.hitRatio !== null &&
    result.hitRatio >= 0.7;
  result.checks = {
    writePause: result.maxWritePauseMs !== null && result.maxWritePauseMs < 1000,
    shareExact: rows.exact,
    nothingLostOrLeftOver: conserved,
    errors: errors.total === 0,
    hitRatio: result.hitRatio !== null && result.hitRatio >= 0.7,
  };
  log(
    `reshard: shard ${newShard} got ${handedOver.length} slots, ${rowsOnNewShard} rows (${movedRowsFromBefore} from before = ${(100 * share).toFixed(2)} %, expected ${expectedRows} = ${(100 * expectedShare).toFixed(2)} %) in ${durationSeconds.toFixed(1)} s; longest write pause ${result.maxWritePauseMs} ms; hit ${result.hitRatio}x of before; errors ${errors.total} (fence 503s ${creates.fence503})`,
  );
  return result;
}
