import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

export const repoRoot = resolve(__dirname, '../../..');

export function repoPath(...parts: string[]): string {
  return join(repoRoot, ...parts);
}

export function readRepoFile(...parts: string[]): string {
  return readFileSync(repoPath(...parts), 'utf8');
}

/** Every *.yaml / *.yml file below the given repository folders, sorted. */
export function listYamlFiles(...folders: string[]): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.ya?ml$/.test(name)) found.push(relative(repoRoot, path));
    }
  };
  for (const folder of folders) walk(repoPath(folder));
  return found.sort();
}

/**
 * Parses every document of a YAML stream (merge keys `<<` on, as docker compose and
 * kustomize read them) and throws with the file name and every error or warning.
 */
export function parseYamlDocuments(text: string, source = '(text)'): unknown[] {
  const documents = parseAllDocuments(text, { merge: true, prettyErrors: true, uniqueKeys: true });
  const list = Array.isArray(documents) ? documents : [documents];
  const problems = list.flatMap((document) => [...document.errors, ...document.warnings]);
  if (problems.length > 0) {
    throw new Error(`${source}: ${problems.map((problem) => problem.message).join('\n')}`);
  }
  return list
    .map((document) => {
      try {
        return document.toJS({ maxAliasCount: 1000 }) as unknown;
      } catch (error) {
        throw new Error(`${source}: ${(error as Error).message}`);
      }
    })
    .filter((value) => value !== null);
}

export function loadYamlFile(file: string): unknown[] {
  return parseYamlDocuments(readRepoFile(file), file);
}

export const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;
