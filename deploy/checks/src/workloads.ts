// What the Kubernetes manifests hold beyond the environment (drift.ts): the failover
// monitor's RBAC against the API calls its node control makes, the PostgreSQL StatefulSets'
// volumes, and the pods' security contexts.
// The list of calls is a contract (libs/contracts) shared with the node control that makes them;
// the node control's source is read as a file, as docker/ and k8s/ are.
import { KUBERNETES_API_CALLS } from '@shortener/contracts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './files';
import { containersOf, podTemplateOf, type Container, type KubernetesObject } from './kustomize';

export interface ApiCall {
  group: string;
  resource: string;
  verb: string;
}

export const nodeControlFile = 'apps/failover-monitor/src/kubernetes-node-control.ts';
export const monitorApiCalls: readonly ApiCall[] = KUBERNETES_API_CALLS;

const key = (call: ApiCall) => `${call.verb} ${call.group ? `${call.group}/` : ''}${call.resource}`;

const verbOfMethod: Record<string, { named: string; collection: string }> = {
  GET: { named: 'get', collection: 'list' },
  POST: { named: 'create', collection: 'create' },
  PUT: { named: 'update', collection: 'update' },
  PATCH: { named: 'patch', collection: 'patch' },
  DELETE: { named: 'delete', collection: 'deletecollection' },
};

/**
 * The API calls a source file makes through `this.call('<METHOD>', `<path>`...)`, as RBAC
 * names them: `/api/v1/namespaces/<ns>/pods/<name>` is `pods` of the core group,
 * `/apis/<group>/<version>/namespaces/<ns>/<resource>/<name>/<sub>` is `<resource>/<sub>` of
 * `<group>`; a GET without a name is a list (`?watch` a watch). A call this cannot read (the
 * method or the path not a literal) is reported as such, so none slips by.
 */
export function apiCallsInSource(text: string): { calls: ApiCall[]; unreadable: string[] } {
  const calls: ApiCall[] = [];
  const unreadable: string[] = [];
  for (const match of text.matchAll(/this\.call\((?:\s*'([A-Z]+)'\s*,\s*`([^`]*)`)?/g)) {
    const literal = match[1] === undefined ? null : [match[0], match[1], match[2]];
    if (!literal || !verbOfMethod[literal[1]]) {
      unreadable.push(text.slice(match.index, match.index + 40).split('\n')[0]);
      continue;
    }
    const [path, query = ''] = literal[2].split('?');
    const parts = path.split('/').filter(Boolean);
    let rest: string[];
    let group: string;
    if (parts[0] === 'api' && parts[1] === 'v1') {
      group = '';
      rest = parts.slice(2);
    } else if (parts[0] === 'apis' && parts.length > 3) {
      group = parts[1];
      rest = parts.slice(3);
    } else {
      unreadable.push(match[0].slice(0, 80));
      continue;
    }
    if (rest[0] === 'namespaces' && rest.length >= 3) rest = rest.slice(2);
    const [resource, name, subresource] = rest;
    if (!resource) {
      unreadable.push(match[0].slice(0, 80));
      continue;
    }
    const verbs = verbOfMethod[literal[1]];
    const verb = name ? verbs.named : /(^|&)watch=/.test(query) ? 'watch' : verbs.collection;
    calls.push({ group, resource: subresource ? `${resource}/${subresource}` : resource, verb });
  }
  return { calls, unreadable };
}

/** The node control's calls read from its source (KUBERNETES_API_CALLS must list each of them). */
export function nodeControlSourceCalls(): { calls: ApiCall[]; unreadable: string[] } {
  return apiCallsInSource(readFileSync(join(repoRoot, nodeControlFile), 'utf8'));
}

type Rule = { apiGroups?: string[]; resources?: string[]; verbs?: string[]; resourceNames?: string[]; nonResourceURLs?: string[] };

/**
 * The failover monitor's rights against the calls it makes: every (group, resource, verb) its
 * ServiceAccount's Roles grant must be one of `calls` (a grant nothing uses fails), every call
 * must be granted, and every call the node control's source makes must be in `calls`.
 */
export function monitorRbacProblems(
  objects: KubernetesObject[],
  account: string | undefined,
  where: string,
  calls: readonly ApiCall[] = monitorApiCalls,
  sourceCalls: { calls: ApiCall[]; unreadable: string[] } = nodeControlSourceCalls(),
): string[] {
  const problems: string[] = [];
  const bindings = objects.filter(
    (object) =>
      (object.kind === 'RoleBinding' || object.kind === 'ClusterRoleBinding') &&
      ((object.subjects as { kind: string; name: string }[]) ?? []).some((subject) => subject.kind === 'ServiceAccount' && subject.name === account),
  );
  const roles = bindings
    .map((binding) => {
      const ref = binding.roleRef as { kind: string; name: string };
      return objects.find((object) => object.kind === ref.kind && object.metadata.name === ref.name);
    })
    .filter((role): role is KubernetesObject => role !== undefined);
  if (!account || !objects.some((object) => object.kind === 'ServiceAccount' && object.metadata.name === account) || roles.length === 0) {
    return [`${where}: the failover monitor needs its ServiceAccount bound to a Role`];
  }
  for (const binding of bindings) if (binding.kind === 'ClusterRoleBinding') problems.push(`${where}: the failover monitor needs no cluster-wide rights`);

  const wanted = new Set(calls.map(key));
  const granted = new Set<string>();
  for (const role of roles) {
    for (const rule of (role.rules as Rule[]) ?? []) {
      const at = `${where}: the failover monitor's ${role.kind} ${role.metadata.name}`;
      if (rule.nonResourceURLs?.length) problems.push(`${at} grants non-resource URLs, which its node control never calls`);
      if (rule.resourceNames?.length) problems.push(`${at} limits a rule to resourceNames, which the checks do not model`);
      for (const group of rule.apiGroups ?? [])
        for (const resource of rule.resources ?? [])
          for (const verb of rule.verbs ?? []) {
            if (group === '*' || resource === '*' || verb === '*') {
              problems.push(`${at} grants a wildcard (${verb} ${group || 'core'}/${resource}); grant exactly the calls of ${nodeControlFile}`);
              continue;
            }
            const grant = key({ group, resource, verb });
            granted.add(grant);
            if (!wanted.has(grant)) problems.push(`${at} grants ${grant}, which no call of ${nodeControlFile} makes (KUBERNETES_API_CALLS)`);
          }
    }
  }
  for (const call of calls)
    if (!granted.has(key(call))) problems.push(`${where}: the failover monitor's Role does not allow ${key(call)}, which its node control calls`);
  for (const call of sourceCalls.calls)
    if (!wanted.has(key(call))) problems.push(`${where}: ${nodeControlFile} calls ${key(call)}, which KUBERNETES_API_CALLS does not list`);
  for (const text of sourceCalls.unreadable) problems.push(`${where}: cannot tell which API call ${nodeControlFile} makes in ${JSON.stringify(text)}`);
  return problems;
}

// ------------------------------------------------------------------------------ volumes

type VolumeMount = { name: string; mountPath: string; subPath?: string; readOnly?: boolean };
type Volume = { name: string; emptyDir?: unknown; configMap?: { name: string }; persistentVolumeClaim?: { claimName: string } };
type SecurityContext = { runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean; runAsUser?: number };
type ClaimTemplate = { metadata: { name: string }; spec: { accessModes?: string[]; resources?: { requests?: { storage?: string } } } };

const mountsOf = (container: Container) => ((container as unknown as { volumeMounts?: VolumeMount[] }).volumeMounts ?? []) as VolumeMount[];
const securityOf = (container: Container) => ((container as unknown as { securityContext?: SecurityContext }).securityContext ?? {}) as SecurityContext;

/** A container's plain `env` value (the database pods set their paths literally). */
function envValue(container: Container, name: string): string | undefined {
  return container.env?.find((entry) => entry.name === name)?.value;
}

/** Under `dir` (or `dir` itself). */
const within = (path: string | undefined, dir: string) => path !== undefined && (path === dir || path.startsWith(`${dir.replace(/\/+$/, '')}/`));

/**
 * The PostgreSQL StatefulSets (pg-s<n>): the data directory on the pod's own claim (a
 * `data` volumeClaimTemplate, ReadWriteOnce, with a size), PGDATA, pgBackRest's pg1-path and
 * spool inside it; the shared pgBackRest repository claim (ReadWriteMany) on
 * PGBACKREST_REPO1_PATH; the node scripts from the postgres-scripts ConfigMap where the
 * command, the image's initdb hook and the backup CronJob expect them.
 */
export function databaseVolumeProblems(objects: KubernetesObject[], where: string): string[] {
  const problems: string[] = [];
  const dataDir = '/var/lib/postgresql/data';
  const scripts: [string, string][] = [
    ['node-entrypoint.sh', '/opt/shortener/node-entrypoint.sh'],
    ['10-replication.sh', '/docker-entrypoint-initdb.d/10-replication.sh'],
    ['backup.sh', '/opt/shortener/backup.sh'],
  ];
  for (const set of objects.filter((object) => object.kind === 'StatefulSet' && /^pg-s\d+$/.test(object.metadata.name))) {
    const at = `${where} StatefulSet/${set.metadata.name}`;
    const spec = set.spec as { volumeClaimTemplates?: ClaimTemplate[] };
    const pod = podTemplateOf(set)!.spec;
    const volumes = (pod.volumes as Volume[] | undefined) ?? [];
    const claims = spec.volumeClaimTemplates ?? [];
    const container = pod.containers.find((candidate) => candidate.name === 'postgres');
    if (!container) {
      problems.push(`${at}: no container postgres`);
      continue;
    }
    const mounts = mountsOf(container);
    for (const mount of mounts) {
      if (!volumes.some((volume) => volume.name === mount.name) && !claims.some((claim) => claim.metadata.name === mount.name))
        problems.push(`${at}: mounts ${mount.name}, which is neither a volume nor a volumeClaimTemplate`);
    }
    const data = claims.find((claim) => claim.metadata.name === 'data');
    if (!data) problems.push(`${at}: no volumeClaimTemplate data (each node keeps its data on its own claim)`);
    else {
      if (!data.spec.accessModes?.includes('ReadWriteOnce')) problems.push(`${at}: volumeClaimTemplate data must be ReadWriteOnce`);
      if (!data.spec.resources?.requests?.storage) problems.push(`${at}: volumeClaimTemplate data requests no storage`);
    }
    if (volumes.some((volume) => volume.name === 'data')) problems.push(`${at}: a pod volume data shadows the volumeClaimTemplate`);
    const dataMount = mounts.find((mount) => mount.name === 'data');
    if (!dataMount || dataMount.mountPath !== dataDir)
      problems.push(`${at}: volumeClaimTemplate data must be mounted at ${dataDir} (mounted at ${dataMount?.mountPath ?? 'nothing'})`);
    else {
      for (const variable of ['PGDATA', 'PGBACKREST_PG1_PATH', 'PGBACKREST_SPOOL_PATH']) {
        const value = envValue(container, variable);
        if (!within(value, dataMount.mountPath)) problems.push(`${at}: ${variable}=${value ?? '(unset)'} is not on the data claim (${dataMount.mountPath})`);
      }
      if (envValue(container, 'PGBACKREST_PG1_PATH') !== envValue(container, 'PGDATA')) problems.push(`${at}: PGBACKREST_PG1_PATH is not PGDATA`);
    }
    const repoPath = envValue(container, 'PGBACKREST_REPO1_PATH');
    const repoMount = mounts.find((mount) => mount.mountPath === repoPath);
    const repoVolume = repoMount && volumes.find((volume) => volume.name === repoMount.name);
    const repoClaim = repoVolume?.persistentVolumeClaim?.claimName;
    const claim = repoClaim && objects.find((object) => object.kind === 'PersistentVolumeClaim' && object.metadata.name === repoClaim);
    if (!repoPath || !repoClaim)
      problems.push(`${at}: PGBACKREST_REPO1_PATH=${repoPath ?? '(unset)'} is not a mounted PersistentVolumeClaim (the shared pgBackRest repository)`);
    else if (!claim) problems.push(`${at}: the pgBackRest repository claim ${repoClaim} does not exist`);
    else if (!((claim.spec as { accessModes?: string[] }).accessModes ?? []).includes('ReadWriteMany'))
      problems.push(`${at}: the pgBackRest repository claim ${repoClaim} must be ReadWriteMany (every node of every shard writes it)`);
    for (const [file, path] of scripts) {
      const mount = mounts.find((candidate) => candidate.mountPath === path);
      const volume = mount && volumes.find((candidate) => candidate.name === mount.name);
      if (!mount || mount.subPath !== file || volume?.configMap?.name !== 'postgres-scripts')
        problems.push(`${at}: ${path} must be ${file} of the ConfigMap postgres-scripts`);
    }
    const command = [...(container.command ?? []), ...(container.args ?? [])];
    if (!command.includes(scripts[0][1])) problems.push(`${at}: the command does not run ${scripts[0][1]}`);
  }
  return problems;
}

/**
 * Security contexts: every container whose root file system is read-only gets a writable
 * `/tmp` from an emptyDir (Node.js, kubectl and the JVM write there), and every pod runs as
 * non-root (the container's `runAsNonRoot`, or the pod's), except the PostgreSQL nodes: the
 * official postgres image's entrypoint (and node-entrypoint.sh) starts as root to own the data
 * directory and drops to the postgres user with gosu.
 */
export function securityProblems(objects: KubernetesObject[], where: string): string[] {
  const problems: string[] = [];
  for (const object of objects) {
    const template = podTemplateOf(object);
    if (!template) continue;
    const at = `${where} ${object.kind}/${object.metadata.name}`;
    const podSecurity = (template.spec.securityContext as SecurityContext | undefined) ?? {};
    const volumes = (template.spec.volumes as Volume[] | undefined) ?? [];
    const database = object.kind === 'StatefulSet' && /^pg-s\d+$/.test(object.metadata.name);
    for (const container of containersOf(object)) {
      const security = securityOf(container);
      const nonRoot = security.runAsNonRoot ?? podSecurity.runAsNonRoot;
      if (!database && nonRoot !== true) problems.push(`${at}: container ${container.name} may run as root (runAsNonRoot is not set)`);
      if (security.runAsUser === 0 || (security.runAsUser === undefined && podSecurity.runAsUser === 0))
        problems.push(`${at}: container ${container.name} runs as uid 0`);
      if (security.readOnlyRootFilesystem) {
        const tmp = mountsOf(container).find((mount) => mount.mountPath === '/tmp');
        const volume = tmp && volumes.find((candidate) => candidate.name === tmp.name);
        if (!tmp || !volume?.emptyDir || tmp.readOnly)
          problems.push(`${at}: container ${container.name} has a read-only root file system but no writable emptyDir on /tmp`);
      }
    }
  }
  return problems;
}
