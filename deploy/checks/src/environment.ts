import { healthPaths, serviceEnvironments, type ServiceName } from '@shortener/config';
import type { z } from 'zod';

export const serviceNames = Object.keys(serviceEnvironments) as ServiceName[];

function shapeOf(service: ServiceName): Record<string, z.ZodType> {
  return (serviceEnvironments[service].schema as unknown as { shape: Record<string, z.ZodType> }).shape;
}

export function knownKeys(service: ServiceName): string[] {
  return Object.keys(shapeOf(service));
}

/** Keys without a default that may not be left out (zod 4: undefined does not parse). */
export function requiredKeys(service: ServiceName): string[] {
  const shape = shapeOf(service);
  return Object.keys(shape).filter((key) => !shape[key].safeParse(undefined).success);
}

export interface EnvironmentProblems {
  unknown: string[];
  missing: string[];
  invalid: string[];
}

/**
 * Compares one deployed environment with the service's schema: no key the schema does not
 * know, every required key present, and the values (with secrets and interpolations
 * replaced by sample values by the caller) accepted by the schema.
 */
export function checkEnvironment(service: ServiceName, environment: Record<string, string>): EnvironmentProblems {
  const known = new Set(knownKeys(service));
  const unknown = Object.keys(environment).filter((key) => !known.has(key));
  const missing = requiredKeys(service).filter((key) => environment[key] === undefined || environment[key] === '');
  const parsed = serviceEnvironments[service].schema.safeParse(
    Object.fromEntries(Object.entries(environment).filter(([key, value]) => known.has(key) && value !== '')),
  );
  const invalid = parsed.success ? [] : parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
  return { unknown, missing, invalid };
}

export function hasProblems(problems: EnvironmentProblems): boolean {
  return problems.unknown.length + problems.missing.length + problems.invalid.length > 0;
}

export { healthPaths, serviceEnvironments };

/** The entry point of a service inside the images (docker/Dockerfile's layout). */
export const mainScript = (service: ServiceName) => `dist/apps/${service}/src/main.js`;
export const migrateScript = 'dist/libs/db/src/migrate.cli.js';

/** The shortener image of a service, whatever registry and tag an overlay gives it. */
export function serviceOfImage(image: string): ServiceName | undefined {
  const match = /(?:^|\/)shortener\/([a-z-]+)(?::[^/@]+)?(?:@.+)?$/.exec(image);
  return match && (serviceNames as string[]).includes(match[1]) ? (match[1] as ServiceName) : undefined;
}

export interface ShardNode {
  name: string;
  host: string;
  port: number;
}
export interface Shard {
  id: number;
  nodes: ShardNode[];
}

export function parseShardNodes(value: string): Shard[] {
  return JSON.parse(value) as Shard[];
}

/** Splits a `host:port` or a comma list of them. */
export function hostPorts(value: string): { host: string; port: number }[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
    .map((item) => ({
      host: item.slice(0, item.lastIndexOf(':')),
      port: Number(item.slice(item.lastIndexOf(':') + 1)),
    }));
}
