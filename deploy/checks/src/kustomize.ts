import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { clone, parseYamlDocuments, repoRoot } from './files';

/**
 * A small kustomize for the checks (no kustomize binary here or in CI). It renders the
 * subset of kustomization.yaml that k8s/ uses and refuses every other field, so a
 * manifest can never rely on something these checks silently skip:
 * resources (files and folders), namespace, labels (without selectors), images,
 * replicas, patches (strategic merge, one document per file, target named by the patch),
 * configMapGenerator / secretGenerator (files, literals, envs; no name hash),
 * generatorOptions.disableNameSuffixHash.
 */

export interface KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

interface Generator {
  name: string;
  files?: string[];
  literals?: string[];
  envs?: string[];
  options?: { disableNameSuffixHash?: boolean };
  type?: string;
}

interface Kustomization {
  apiVersion?: string;
  kind?: string;
  resources?: string[];
  namespace?: string;
  labels?: {
    pairs: Record<string, string>;
    includeSelectors?: boolean;
    includeTemplates?: boolean;
  }[];
  images?: { name: string; newName?: string; newTag?: string; digest?: string }[];
  replicas?: { name: string; count: number }[];
  patches?: { path?: string; patch?: string }[];
  configMapGenerator?: Generator[];
  secretGenerator?: Generator[];
  generatorOptions?: { disableNameSuffixHash?: boolean };
}

const supportedFields = new Set([
  'apiVersion',
  'kind',
  'resources',
  'namespace',
  'labels',
  'images',
  'replicas',
  'patches',
  'configMapGenerator',
  'secretGenerator',
  'generatorOptions',
]);

/** Kinds that live outside namespaces (the ones a shortener deployment could meet). */
const clusterScoped = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'PersistentVolume',
  'StorageClass',
  'CustomResourceDefinition',
  'PriorityClass',
  'IngressClass',
]);

export interface RenderOptions {
  /** A generator's `envs` file that does not exist (a git-ignored secret) is read from `<file>.example`. */
  allowExampleEnvFiles?: boolean;
}

export interface Rendered {
  objects: KubernetesObject[];
  /** Every file the render read, relative to the repository. */
  files: string[];
  notes: string[];
}

export function renderKustomization(folder: string, options: RenderOptions = {}): Rendered {
  const files: string[] = [];
  const notes: string[] = [];
  const objects = render(join(repoRoot, folder), options, files, notes);
  const seen = new Set<string>();
  for (const object of objects) {
    const id = objectId(object);
    if (seen.has(id)) throw new Error(`${folder}: two resources with the id ${id}`);
    seen.add(id);
  }
  return { objects, files, notes };
}

export function objectId(object: KubernetesObject): string {
  return `${object.kind}/${object.metadata?.namespace ?? '~'}/${object.metadata?.name}`;
}

function readDocuments(path: string, files: string[]): unknown[] {
  files.push(relative(repoRoot, path));
  return parseYamlDocuments(readFileSync(path, 'utf8'), relative(repoRoot, path));
}

function render(folder: string, options: RenderOptions, files: string[], notes: string[]): KubernetesObject[] {
  const file = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'].map((name) => join(folder, name)).find(existsSync);
  if (!file) throw new Error(`${relative(repoRoot, folder)}: no kustomization.yaml`);
  const [kustomization] = readDocuments(file, files) as [Kustomization];
  const where = relative(repoRoot, file);
  for (const field of Object.keys(kustomization)) {
    if (!supportedFields.has(field)) throw new Error(`${where}: field "${field}" is not supported by the checks' renderer`);
  }
  if (kustomization.kind && kustomization.kind !== 'Kustomization') throw new Error(`${where}: kind must be Kustomization`);

  let objects: KubernetesObject[] = [];
  for (const entry of kustomization.resources ?? []) {
    const path = join(folder, entry);
    if (!existsSync(path)) throw new Error(`${where}: resource ${entry} does not exist`);
    if (statSync(path).isDirectory()) objects.push(...render(path, options, files, notes));
    else objects.push(...(readDocuments(path, files) as KubernetesObject[]));
  }

  const hashless = kustomization.generatorOptions?.disableNameSuffixHash === true;
  for (const [kind, generators] of [
    ['ConfigMap', kustomization.configMapGenerator ?? []],
    ['Secret', kustomization.secretGenerator ?? []],
  ] as const) {
    for (const generator of generators) {
      if (!hashless && generator.options?.disableNameSuffixHash !== true) {
        throw new Error(`${where}: generator ${generator.name} needs disableNameSuffixHash (name hashes are not rendered here)`);
      }
      objects.push(generate(kind, generator, folder, where, options, files, notes));
    }
  }

  for (const entry of kustomization.patches ?? []) {
    const documents = entry.path ? readDocuments(join(folder, entry.path), files) : parseYamlDocuments(entry.patch ?? '', `${where} inline patch`);
    if (documents.length !== 1) throw new Error(`${where}: patch ${entry.path ?? '(inline)'} must hold exactly one document`);
    const patch = documents[0] as KubernetesObject;
    const index = objects.findIndex((object) => object.kind === patch.kind && object.metadata.name === patch.metadata?.name);
    if (index < 0) throw new Error(`${where}: patch ${entry.path ?? '(inline)'} targets ${patch.kind}/${patch.metadata?.name}, which does not exist`);
    objects[index] = strategicMerge(objects[index], patch, []) as KubernetesObject;
  }

  for (const image of kustomization.images ?? []) {
    let used = false;
    for (const container of objects.flatMap(containersOf)) {
      const { name, tag } = splitImage(container.image);
      if (name !== image.name) continue;
      used = true;
      container.image = `${image.newName ?? name}${image.digest ? `@${image.digest}` : `:${image.newTag ?? tag ?? 'latest'}`}`;
    }
    if (!used) throw new Error(`${where}: image ${image.name} is used by no container`);
  }

  for (const { name, count } of kustomization.replicas ?? []) {
    const target = objects.find((object) => ['Deployment', 'StatefulSet', 'ReplicaSet'].includes(object.kind) && object.metadata.name === name);
    if (!target) throw new Error(`${where}: replicas for ${name}, which does not exist`);
    (target.spec as { replicas?: number }).replicas = count;
  }

  if (kustomization.namespace) {
    const namespace = kustomization.namespace;
    objects = objects.map((object) => {
      if (clusterScoped.has(object.kind)) return object;
      const copy: KubernetesObject = { ...object, metadata: { ...object.metadata, namespace } };
      if (object.kind === 'RoleBinding' || object.kind === 'ClusterRoleBinding') {
        copy.subjects = ((object.subjects as { kind: string; namespace?: string }[]) ?? []).map((subject) =>
          subject.kind === 'ServiceAccount' ? { ...subject, namespace } : subject,
        );
      }
      return copy;
    });
  }

  for (const label of kustomization.labels ?? []) {
    if (label.includeSelectors) throw new Error(`${where}: labels with includeSelectors are not supported by the checks' renderer`);
    for (const object of objects) {
      object.metadata.labels = { ...(object.metadata.labels ?? {}), ...label.pairs };
      const template = podTemplateOf(object);
      if (label.includeTemplates && template) {
        template.metadata = {
          ...(template.metadata ?? {}),
          labels: { ...(template.metadata?.labels ?? {}), ...label.pairs },
        };
      }
    }
  }
  return objects;
}

function generate(
  kind: 'ConfigMap' | 'Secret',
  generator: Generator,
  folder: string,
  where: string,
  options: RenderOptions,
  files: string[],
  notes: string[],
): KubernetesObject {
  const data: Record<string, string> = {};
  for (const entry of generator.files ?? []) {
    const [key, path] = entry.includes('=') ? entry.split('=', 2) : [basename(entry), entry];
    const full = join(folder, path);
    if (relative(folder, full).startsWith('..')) throw new Error(`${where}: ${entry} is outside the kustomization's folder (kustomize refuses it)`);
    files.push(relative(repoRoot, full));
    data[key] = readFileSync(full, 'utf8');
  }
  for (const literal of generator.literals ?? []) {
    const separator = literal.indexOf('=');
    data[literal.slice(0, separator)] = literal.slice(separator + 1);
  }
  for (const entry of generator.envs ?? []) {
    let path = join(folder, entry);
    if (!existsSync(path) && options.allowExampleEnvFiles && existsSync(`${path}.example`)) {
      notes.push(`${relative(repoRoot, path)} does not exist (it is not committed): read ${relative(repoRoot, path)}.example instead`);
      path = `${path}.example`;
    }
    files.push(relative(repoRoot, path));
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      const trimmed = line.trim();
      if (!trimmed || trimmed.startsWith('#')) continue;
      const separator = trimmed.indexOf('=');
      if (separator < 1) throw new Error(`${relative(repoRoot, path)}: "${trimmed}" is not KEY=value`);
      data[trimmed.slice(0, separator)] = trimmed.slice(separator + 1);
    }
  }
  const metadata = { name: generator.name };
  if (kind === 'ConfigMap') return { apiVersion: 'v1', kind, metadata, data };
  const encoded = Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString('base64')]));
  return { apiVersion: 'v1', kind, metadata, type: generator.type ?? 'Opaque', data: encoded };
}

/** Merge keys of the lists that strategic merge patches merge item by item. */
function mergeKeyOf(path: string[], items: unknown[]): string | undefined {
  const parent = path[path.length - 1];
  const sample = items.find((item) => item && typeof item === 'object') as Record<string, unknown> | undefined;
  if (!sample) return undefined;
  switch (parent) {
    case 'containers':
    case 'initContainers':
    case 'env':
    case 'volumes':
    case 'imagePullSecrets':
      return 'name';
    case 'volumeMounts':
      return 'mountPath';
    case 'ports':
      return 'containerPort' in sample ? 'containerPort' : 'port';
    default:
      return undefined;
  }
}

export function strategicMerge(base: unknown, patch: unknown, path: string[]): unknown {
  if (patch && typeof patch === 'object' && !Array.isArray(patch)) {
    if ('$patch' in patch) throw new Error(`$patch directives are not supported by the checks' renderer (${path.join('.')})`);
    const result: Record<string, unknown> = base && typeof base === 'object' && !Array.isArray(base) ? { ...(base as object) } : {};
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete result[key];
      else result[key] = strategicMerge(result[key], value, [...path, key]);
    }
    return result;
  }
  if (Array.isArray(patch) && Array.isArray(base)) {
    const key = mergeKeyOf(path, [...base, ...patch]);
    if (!key) return clone(patch);
    const result = [...base];
    for (const item of patch as Record<string, unknown>[]) {
      const index = result.findIndex((existing) => (existing as Record<string, unknown>)[key] === item[key]);
      if (index >= 0) result[index] = strategicMerge(result[index], item, path);
      else result.push(clone(item));
    }
    return result;
  }
  return clone(patch);
}

export interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: {
    name: string;
    value?: string;
    valueFrom?: {
      configMapKeyRef?: { name: string; key: string };
      secretKeyRef?: { name: string; key: string };
      fieldRef?: { fieldPath: string };
    };
  }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string }; prefix?: string }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}

export interface Probe {
  httpGet?: { path: string; port: number | string };
  exec?: { command: string[] };
  tcpSocket?: { port: number | string };
}

export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  serviceAccountName?: string;
  [key: string]: unknown;
}

export function podTemplateOf(object: KubernetesObject): PodTemplate | undefined {
  const spec = object.spec as { template?: PodTemplate; jobTemplate?: { spec: { template: PodTemplate } } } | undefined;
  if (!spec) return undefined;
  if (object.kind === 'CronJob') return spec.jobTemplate?.spec.template;
  return ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job'].includes(object.kind) ? spec.template : undefined;
}

export function containersOf(object: KubernetesObject): Container[] {
  const template = podTemplateOf(object);
  return template ? [...(template.spec.initContainers ?? []), ...template.spec.containers] : [];
}

export function splitImage(image: string): { name: string; tag?: string } {
  const at = image.indexOf('@');
  const withoutDigest = at >= 0 ? image.slice(0, at) : image;
  const colon = withoutDigest.lastIndexOf(':');
  if (colon > withoutDigest.lastIndexOf('/')) return { name: withoutDigest.slice(0, colon), tag: withoutDigest.slice(colon + 1) };
  return { name: withoutDigest };
}

export const overlaysFolder = 'k8s/overlays';
export const kustomizationRoots = ['k8s/base', `${overlaysFolder}/local`, `${overlaysFolder}/production`];
export const overlays = [`${overlaysFolder}/local`, `${overlaysFolder}/production`];

export function isKustomizationFile(file: string): boolean {
  return basename(file) === 'kustomization.yaml' || basename(file) === 'kustomization.yml';
}

export function folderOf(file: string): string {
  return dirname(file);
}
