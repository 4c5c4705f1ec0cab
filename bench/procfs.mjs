// Resident memory and CPU time of processes, from /proc (Linux only; elsewhere the
// figures are null).
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on every Linux the bench targets

/** VmRSS of a process in MB, or null when it is gone. */
export function rssMb(pid) {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

function statOf(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command may hold spaces and parentheses: fields start after the last ')'
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used so far, or 0 when it is gone. */
export function cpuSeconds(pid) {
  return (statOf(pid)?.cpuTicks ?? 0) / TICKS_PER_SECOND;
}

/** The pids of a process's children (one level), e.g. the backends of a postmaster. */
export function childrenOf(parents) {
  const wanted = new Set(parents);
  const children = [];
  let entries = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return children;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = statOf(entry);
    if (stat && wanted.has(stat.ppid)) children.push(Number(entry));
  }
  return children;
}

/**
 * CPU accounting over a measured phase, by group: `groups` maps a name to a function
 * returning that group's pids now (so that backends opened during the phase count too).
 * Processes that exit during the phase lose their share; the phases are short.
 */
export class CpuMeter {
  constructor(groups) {
    this.groups = groups;
    this.start = null;
  }

  snapshot() {
    const taken = { at: performance.now(), groups: {} };
    for (const [name, pidsOf] of Object.entries(this.groups)) {
      const perPid = {};
      for (const pid of pidsOf()) perPid[pid] = cpuSeconds(pid);
      taken.groups[name] = perPid;
    }
    return taken;
  }

  begin() {
    this.start = this.snapshot();
  }

  /** { group: cores used on average over the phase } plus the wall seconds. */
  end() {
    const stop = this.snapshot();
    const wall = (stop.at - this.start.at) / 1000;
    const cores = {};
    for (const [name, perPid] of Object.entries(stop.groups)) {
      let used = 0;
      for (const [pid, seconds] of Object.entries(perPid)) used += seconds - (this.start.groups[name]?.[pid] ?? 0);
      cores[name] = wall > 0 ? used / wall : 0;
    }
    return { wallSeconds: wall, cores };
  }
}
