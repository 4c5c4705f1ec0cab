import { readRepoFile } from './files';

export interface Instruction {
  keyword: string;
  value: string;
  line: number;
}

export interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  globalArgs: Record<string, string | undefined>;
  stages: Stage[];
}

/** Parses a Dockerfile into its global ARGs and stages (comments dropped, `\` lines joined). */
export function parseDockerfile(text: string): Dockerfile {
  const logical: { text: string; line: number }[] = [];
  let current: { text: string; line: number } | undefined;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trimEnd();
    if (!current && (line.trim() === '' || line.trim().startsWith('#'))) return;
    if (current && line.trim().startsWith('#')) return;
    const continued = line.endsWith('\\');
    const content = continued ? line.slice(0, -1) : line;
    if (current) current.text += ` ${content.trim()}`;
    else current = { text: content.trim(), line: index + 1 };
    if (!continued) {
      logical.push(current);
      current = undefined;
    }
  });
  if (current) throw new Error(`line ${current.line}: the file ends inside a continued line`);

  const globalArgs: Record<string, string | undefined> = {};
  const stages: Stage[] = [];
  for (const { text: entry, line } of logical) {
    const match = /^([A-Za-z]+)\s+(.*)$/.exec(entry);
    if (!match) throw new Error(`line ${line}: cannot read "${entry}"`);
    const keyword = match[1].toUpperCase();
    const value = match[2].trim();
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(value);
      if (!from) throw new Error(`line ${line}: cannot read FROM ${value}`);
      stages.push({ from: from[1], name: from[2], instructions: [] });
    } else if (stages.length === 0) {
      if (keyword !== 'ARG') throw new Error(`line ${line}: only ARG may come before the first FROM`);
      const [name, ...rest] = value.split('=');
      globalArgs[name] = rest.length ? rest.join('=') : undefined;
    } else {
      stages[stages.length - 1].instructions.push({ keyword, value, line });
    }
  }
  return { globalArgs, stages };
}

export function loadDockerfile(): Dockerfile {
  return parseDockerfile(readRepoFile('docker/Dockerfile'));
}

/** `${NAME}` and `$NAME` from the global ARG defaults. */
export function expandArgs(value: string, args: Record<string, string | undefined>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (match, braced, bare) => args[braced ?? bare] ?? match);
}

export function stageNamed(dockerfile: Dockerfile, name: string): Stage | undefined {
  return dockerfile.stages.find((stage) => stage.name === name);
}

export function instructions(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword);
}

/** The last CMD of a stage, as JSON (exec form is required). */
export function execForm(instruction: Instruction | undefined): string[] | undefined {
  if (!instruction) return undefined;
  const json = instruction.keyword === 'HEALTHCHECK' ? instruction.value.replace(/^.*?\bCMD\s+/, '') : instruction.value;
  try {
    const parsed = JSON.parse(json) as unknown;
    return Array.isArray(parsed) && parsed.every((item) => typeof item === 'string') ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** `ENV A=1 B=2` lines of a stage, merged (later wins). */
export function environmentOf(stage: Stage): Record<string, string> {
  const result: Record<string, string> = {};
  for (const instruction of instructions(stage, 'ENV')) {
    for (const match of instruction.value.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)) {
      result[match[1]] = match[2].replace(/^"|"$/g, '');
    }
  }
  return result;
}
