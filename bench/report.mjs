// bench/results/latest.json and the table printed at the end of a run.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

export const RESULTS_DIR = join(import.meta.dirname, 'results');

export function machine() {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    totalMemoryMb: Math.round(os.totalmem() / 1024 / 1024),
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    loadAverageAtEnd: os.loadavg().map((load) => Number(load.toFixed(2))),
  };
}

/** requests/s per core: of the whole stack's CPU during the phase, and of PostgreSQL's alone. */
export function perCore(figure, groups) {
  if (!figure?.subject?.cpuCores) return null;
  const cores = figure.subject.cpuCores;
  const stackCores = groups.reduce((sum, group) => sum + (cores[group] ?? 0), 0);
  const rps = figure.subject.requestsPerSecond;
  return {
    requestsPerSecond: rps,
    stackCoresUsed: Number(stackCores.toFixed(2)),
    perStackCore: stackCores > 0 ? Math.round(rps / stackCores) : null,
    postgresCoresUsed: cores.postgres ?? null,
    perPostgresCore: cores.postgres > 0 ? Math.round(rps / cores.postgres) : null,
    perMachineCore: Math.round(rps / os.cpus().length),
  };
}

const SERVICE = /^(gateway|writer|reader-\d+|monitor-\d+)$/;

export function memoryFigure(peakMb) {
  const processes = Object.fromEntries(
    Object.entries(peakMb)
      .sort()
      .map(([name, mb]) => [name, Number(mb.toFixed(1))]),
  );
  const services = Object.entries(processes).filter(([name]) => SERVICE.test(name));
  return {
    peakRssMb: processes,
    target: 'every service process < 150 MB (Redis and Kafka are listed, not judged)',
    pass: services.length > 0 && services.every(([, mb]) => mb < 150),
  };
}

export function writeResults(results) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, 'latest.json');
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}

const pad = (value, width) => String(value ?? '-').padEnd(width);
const padStart = (value, width) => String(value ?? '-').padStart(width);
const passText = (pass) => (pass === undefined || pass === null ? '' : pass ? 'PASS' : 'FAIL');

function row(cells, widths) {
  return cells.map((cell, i) => (i === 0 ? pad(cell, widths[i]) : padStart(cell, widths[i]))).join('  ');
}

/** The reshard figure on one line (and its load on a second one). */
function reshardText(rs) {
  const pct = (share) => (share === null || share === undefined ? '-' : `${(share * 100).toFixed(2)} %`);
  const hit = rs.load?.hitRequestsPerSecond;
  const load = hit ? `hit ${hit.during ?? '-'} req/s during / ${hit.before ?? '-'} before = ${rs.hitRatio ?? '-'}x (target >= 0.7)` : '';
  if (rs.error) return `error: ${rs.error}${load ? `; ${load}` : ''}`;
  const fence = rs.load?.create?.fence503WithRetryAfter ?? 0;
  return (
    `shard ${rs.shard}: ${rs.rows.moved} rows in ${rs.operationSeconds} s = ${rs.rowsPerSecond} rows/s (${rs.totalSeconds} s POST to done, ` +
    `${rs.provisionSeconds ?? '-'} s provisioning); share ${pct(rs.rows.share)}, handed-over slots' ${pct(rs.rows.expectedShare)} ` +
    `(${rs.rows.exact ? 'exact' : `${rs.rows.movedFromBefore} vs ${rs.rows.expectedFromBefore} rows`}); longest write pause ${rs.maxWritePauseMs} ms (target < 1000)\n` +
    `${pad('', 22)}  ${load}; errors ${rs.errors.total} (503 + Retry-After in a fence: ${fence}; target 0); ` +
    `lost or left over: ${rs.checks?.nothingLostOrLeftOver ? 'none' : 'SOME'}`
  );
}

export function table(results) {
  const lines = [];
  const widths = [22, 9, 8, 8, 7, 10, 8, 8, 6, 6, 7, 18, 5];
  lines.push(row(['figure', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'ref req/s', 'ref p50', 'ref p99', 'ratio', 'p99 x', 'cpu x', 'target', ''], widths));
  lines.push('-'.repeat(widths.reduce((a, b) => a + b + 2, 0)));
  for (const key of ['redirectCacheHit', 'redirectCacheMiss', 'create']) {
    const f = results.figures[key];
    if (!f) continue;
    if (f.error) {
      lines.push(row([key, 'error', '', '', '', '', '', '', '', '', '', f.error.slice(0, 18), 'FAIL'], widths));
      continue;
    }
    lines.push(
      row(
        [
          f.figure,
          f.subject.requestsPerSecond,
          f.subject.latencyMs.p50,
          f.subject.latencyMs.p99,
          f.subject.errors,
          f.reference.requestsPerSecond,
          f.reference.latencyMs.p50,
          f.reference.latencyMs.p99,
          f.ratio,
          f.p99Ratio,
          f.cpuPerRequestRatio,
          f.target
            .replace('requests/s ', '')
            .replace(/ reference/g, '')
            .replace('; ', ', '),
          passText(f.pass),
        ],
        widths,
      ),
    );
  }
  const fo = results.figures.failover;
  if (fo) {
    const text = fo.error ? `error: ${fo.error}` : fo.seconds === null ? 'no recovery' : `${fo.seconds} s to first 201 on shard ${fo.shard}`;
    lines.push(
      `${pad('failover', widths[0])}  ${text} (topology changed after ${fo.topologyChangedAfterSeconds ?? '-'} s; target ${fo.target})  ${passText(fo.pass)}`,
    );
  }
  const rs = results.figures.reshard;
  if (rs) lines.push(`${pad('reshard', widths[0])}  ${reshardText(rs)}  ${passText(rs.pass)}`);
  lines.push("ratio = req/s of the subject / the reference; p99 x = p99 / reference p99; cpu x = CPU per request / the reference's");
  lines.push('(CPU per request, from /proc: the processes on the path of a request, e.g. gateway+Redis vs reference+Redis for a cache hit)');
  lines.push('');
  const pc = results.perCore;
  if (pc) {
    lines.push('requests/s per core (stack CPU = every process of the stack, measured from /proc during the phase):');
    for (const [name, f] of Object.entries(pc)) {
      if (!f || f.requestsPerSecond === undefined) continue;
      lines.push(
        `  ${pad(name, 20)} ${padStart(f.requestsPerSecond, 8)} req/s on ${f.stackCoresUsed} stack cores = ${padStart(f.perStackCore, 6)}/core; PostgreSQL ${f.postgresCoresUsed} cores = ${f.perPostgresCore ?? '-'}/PG core`,
      );
    }
    lines.push(`  design claim: 5,000 reads/s and 1,000 writes/s per database`);
  }
  if (results.memory) {
    lines.push(
      `peak RSS under load (MB): ${Object.entries(results.memory.peakRssMb)
        .map(([n, mb]) => `${n} ${mb}`)
        .join(', ')}  (services < 150 MB: ${passText(results.memory.pass)})`,
    );
  }
  lines.push(
    `stack start-up: ${results.startupSeconds === null ? 'attached to a running stack' : `${results.startupSeconds} s`}; errors under load: ${results.errorsUnderLoad.total} (target 0)`,
  );
  lines.push(`generator CPU (cores, per phase): ${results.generatorCpu.map(([name, cores]) => `${name} ${cores}`).join(', ')}`);
  lines.push(
    `machine: ${results.machine.cores} x ${results.machine.cpuModel}, ${results.machine.totalMemoryMb} MB, ${results.machine.node}; load average at end ${results.machine.loadAverageAtEnd.join(' ')}`,
  );
  return lines.join('\n');
}
