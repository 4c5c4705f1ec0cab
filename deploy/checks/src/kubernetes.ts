import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ts from 'typescript';
import type { KubernetesObject } from './kustomize';

/**
 * Kubernetes objects are checked twice, offline, with the `kubernetes-models` package
 * (generated from the Kubernetes OpenAPI document):
 * 1. its JSON-schema validators (ajv, compiled): types, required fields, enums, formats;
 * 2. its TypeScript declarations: the object is type-checked as an object literal of the
 *    kind's interface, so an unknown or misspelt field (`livenessProb`, `containerport`),
 *    which the OpenAPI schemas allow, is an error too (like kubeconform -strict).
 */

// The core kinds, and the Prometheus operator's (PodMonitor, ServiceMonitor, PrometheusRule).
const modelPackages = ['kubernetes-models', '@kubernetes-models/prometheus-operator'].map((name) => ({
  name,
  root: dirname(require.resolve(`${name}/package.json`)),
}));

/** The module of the kind's model, e.g. `kubernetes-models/apps/v1/Deployment`. */
function modelModule(object: { apiVersion?: unknown; kind?: unknown }): string | undefined {
  if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string') return undefined;
  if (!/^[A-Za-z0-9.-]+(\/[A-Za-z0-9]+)?$/.test(object.apiVersion) || !/^[A-Za-z]+$/.test(object.kind)) return undefined;
  const path = `${object.apiVersion}/${object.kind}`;
  const owner = modelPackages.find((models) => existsSync(join(models.root, `${path}.js`)));
  return owner ? `${owner.name}/${path}` : undefined;
}

interface Model {
  validate(): void;
}

/** Schema errors of one object (empty when valid). */
export function validateAgainstSchema(object: unknown): string[] {
  const candidate = object as KubernetesObject;
  const module = modelModule(candidate ?? {});
  if (!module) return [`unknown apiVersion/kind: ${candidate?.apiVersion}/${candidate?.kind}`];
  const exported = require(module) as Record<string, new (data: unknown) => Model>;
  const Model = exported[candidate.kind];
  try {
    new Model(candidate).validate();
    return [];
  } catch (error) {
    return [(error as Error).message];
  }
}

/** Unknown fields and type errors, from the declarations; one list of messages per object. */
export function typeCheckObjects(objects: unknown[]): string[][] {
  const problems: string[][] = objects.map(() => []);
  const lines: string[] = [];
  const owners: number[] = [];
  objects.forEach((object, index) => {
    const module = modelModule((object ?? {}) as KubernetesObject);
    if (!module) {
      problems[index].push('unknown apiVersion/kind');
      return;
    }
    const kind = (object as KubernetesObject).kind;
    const text = [`import type { I${kind} as T${index} } from "${module}";`, `export const o${index}: T${index} = ${JSON.stringify(object, null, 1)};`].join(
      '\n',
    );
    for (const line of text.split('\n')) {
      lines.push(line);
      owners.push(index);
    }
  });
  const fileName = join(__dirname, '__manifests__.ts');
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, language, onError, create) =>
    name === fileName ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, onError, create);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === fileName || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === fileName ? source : readFile(name));
  const program = ts.createProgram([fileName], options, host);
  const sourceFile = program.getSourceFile(fileName)!;
  for (const diagnostic of [...program.getSyntacticDiagnostics(sourceFile), ...program.getSemanticDiagnostics(sourceFile)]) {
    const line = diagnostic.start === undefined ? 0 : sourceFile.getLineAndCharacterOfPosition(diagnostic.start).line;
    const owner = owners[line] ?? 0;
    problems[owner].push(`${ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ')} (line ${lines[line]?.trim()})`);
  }
  return problems;
}
