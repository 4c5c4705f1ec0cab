// The load generator: autocannon's programmatic API in this one process (no worker
// threads), keep-alive HTTP/1.1 connections, no pipelining. Every phase also reports the
// generator's own CPU use (process.cpuUsage()), so a saturated generator shows.
import autocannon from 'autocannon';

const round = (value, digits = 2) => (value === null || value === undefined ? null : Number(value.toFixed(digits)));

/**
 * Runs one load phase. `expect` is the set of status codes counted as successes;
 * anything else, socket errors and timeouts are errors.
 *   { url, connections, duration | amount, requests, expect, onResponse }
 */
export async function runLoad({ url, connections, duration, amount, requests, expect, timeoutSeconds = 10, title }) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const instance = autocannon({
    url,
    connections,
    pipelining: 1,
    timeout: timeoutSeconds,
    ...(amount ? { amount } : { duration }),
    requests,
    title,
  });
  const result = await instance;
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return summarize(result, { wall, cpu, expect });
}

/** Like runLoad, but the caller gets the instance to stop it early (the failover phase). */
export function startLoad({ url, connections, requests, duration, timeoutSeconds = 10 }) {
  return autocannon({
    url,
    connections,
    pipelining: 1,
    timeout: timeoutSeconds,
    duration,
    requests,
  });
}

export function summarize(result, { wall, cpu, expect }) {
  let ok = 0;
  let unexpected = 0;
  const statuses = {};
  for (const [status, { count }] of Object.entries(result.statusCodeStats ?? {})) {
    statuses[status] = count;
    if (expect.has(Number(status))) ok += count;
    else unexpected += count;
  }
  const completed = result.latency.totalCount;
  // requests/s over the whole phase (autocannon's own average is over 1 s samples and
  // undercounts a phase that ends mid-second)
  const elapsed = result.duration > 0 ? result.duration : wall;
  return {
    requestsPerSecond: round(completed / elapsed, 1),
    latencyMs: {
      p50: round(result.latency.p50),
      p99: round(result.latency.p99),
      mean: round(result.latency.average),
      max: round(result.latency.max),
    },
    completed,
    ok,
    errors: unexpected + result.errors + result.timeouts,
    errorDetail: {
      socketErrors: result.errors,
      timeouts: result.timeouts,
      unexpectedStatus: unexpected,
      statuses,
    },
    seconds: round(elapsed, 2),
    generatorCpu: {
      userMs: round(cpu.user / 1000, 0),
      systemMs: round(cpu.system / 1000, 0),
      cores: round((cpu.user + cpu.system) / 1e6 / wall, 2),
    },
  };
}
