import { commandOf, composeEnvironment, interpolate, type ComposeDocument } from './compose';
import {
  checkEnvironment,
  healthPaths,
  hostPorts,
  knownKeys,
  mainScript,
  migrateScript,
  parseShardNodes,
  serviceEnvironments,
  serviceNames,
  serviceOfImage,
  type Shard,
} from './environment';
import { containersOf, podTemplateOf, type Container, type KubernetesObject, type Probe } from './kustomize';
import { databaseRolePasswordVariables, databaseRoles, type ServiceName } from '@shortener/config';
import { databaseVolumeProblems, monitorRbacProblems, securityProblems } from './workloads';

/** Values that the real deployments take from secrets or the operator's environment. */
export const sampleVariables: Record<string, string> = {
  PG_PASSWORD: 'sample-password-for-checks',
  ADMIN_TOKEN: 'sample-admin-token-for-checks',
  RPC_SECRET: 'sample-rpc-secret-for-the-drift-checks',
  PG_WRITER_PASSWORD: 'sample-writer-password-for-checks',
  PG_READER_PASSWORD: 'sample-reader-password-for-checks',
  PG_MONITOR_PASSWORD: 'sample-monitor-password-for-checks',
};

/** Variables the migrations (the writer image's migrate CLI) take beyond the writer's own. */
const migrateKeys = (): Set<string> => new Set([...knownKeys('writer'), ...Object.values(databaseRolePasswordVariables)]);

/**
 * Least privilege (docs/reference.md): every service that uses PostgreSQL connects as its own
 * role, with the password the migrations set for that role; none as the superuser.
 */
function databaseRoleProblems(services: { where: string; app: ServiceName; migrate: boolean; environment: Record<string, string> }[], scope: string): string[] {
  const problems: string[] = [];
  const migrations = services.filter((service) => service.migrate);
  for (const migration of migrations) {
    for (const variable of Object.values(databaseRolePasswordVariables))
      if (!migration.environment[variable]) problems.push(`${migration.where}: ${variable} is missing (the migrations set each service role's password)`);
  }
  for (const service of services) {
    if (service.migrate || service.app === 'gateway') continue;
    const role = databaseRoles[service.app];
    if (service.environment.PG_USER !== role)
      problems.push(`${service.where}: PG_USER is ${service.environment.PG_USER ?? '(unset)'}, not the ${service.app}'s own role ${role}`);
    const variable = databaseRolePasswordVariables[service.app];
    for (const migration of migrations) {
      if (service.environment.PG_PASSWORD === migration.environment.PG_PASSWORD)
        problems.push(`${service.where}: PG_PASSWORD is the superuser's password (${migration.where})`);
      else if (service.environment.PG_PASSWORD !== migration.environment[variable])
        problems.push(`${service.where}: PG_PASSWORD is not the ${variable} the migrations set (${migration.where})`);
    }
  }
  if (migrations.length === 0) problems.push(`${scope}: nothing runs the migrations (${migrateScript})`);
  return problems;
}

export interface Topology {
  shards: number;
  nodesPerShard: number[];
  nodeNames: string[];
  readers: number;
  monitors: number;
  shardNodes: Shard[];
}

function describe(problems: EnvironmentCheck, where: string): string[] {
  return [
    ...problems.unknown.map((key) => `${where}: ${key} is not a variable of the service's schema`),
    ...problems.missing.map((key) => `${where}: required variable ${key} is missing`),
    ...problems.invalid.map((issue) => `${where}: the schema rejects ${issue}`),
  ];
}
type EnvironmentCheck = ReturnType<typeof checkEnvironment>;

function shardNodeProblems(shards: Shard[], where: string): string[] {
  const problems: string[] = [];
  shards.forEach((shard, index) => {
    if (shard.id !== index) problems.push(`${where}: SHARD_NODES shard ${index} has id ${shard.id}`);
    shard.nodes.forEach((node, nodeIndex) => {
      if (node.name !== `s${index}n${nodeIndex}`)
        problems.push(`${where}: SHARD_NODES node ${node.name} should be named s${index}n${nodeIndex} (docs/runtime.md)`);
    });
  });
  return problems;
}

// ------------------------------------------------------------------------------ compose

interface ComposeRole {
  service: string;
  app: ServiceName;
  migrate: boolean;
  environment: Record<string, string>;
}

function composeRoles(document: ComposeDocument, problems: string[]): ComposeRole[] {
  const roles: ComposeRole[] = [];
  for (const [name, service] of Object.entries(document.services)) {
    const app = service.image ? serviceOfImage(service.image) : undefined;
    if (!app) continue;
    const where = `compose service ${name}`;
    const command = commandOf(service);
    const migrate = command.includes(migrateScript);
    if (service.build) {
      if (service.build.dockerfile !== 'docker/Dockerfile') problems.push(`${where}: built from ${service.build.dockerfile}, not docker/Dockerfile`);
      if (service.build.args?.APP !== app) problems.push(`${where}: image shortener/${app} built with APP=${service.build.args?.APP}`);
    }
    if (migrate) {
      if (app !== 'writer') problems.push(`${where}: the migrations run from the writer image, not ${app}`);
    } else if (command[0] !== 'node' || command[command.length - 1] !== mainScript(app)) {
      problems.push(`${where}: command ${JSON.stringify(command)} does not start ${mainScript(app)}`);
    }
    const environment: Record<string, string> = {};
    for (const [key, raw] of Object.entries(composeEnvironment(service))) {
      const { value, missing } = interpolate(raw, sampleVariables);
      for (const variable of missing) {
        if (!(variable in sampleVariables)) problems.push(`${where}: ${key} needs \${${variable}}, which nothing sets`);
      }
      environment[key] = value;
    }
    roles.push({ service: name, app, migrate, environment });
  }
  return roles;
}

function healthcheckUrl(test: string[] | string | undefined): URL | undefined {
  const words = Array.isArray(test) ? test : (test ?? '').split(/\s+/);
  const url = words.find((word) => /^https?:\/\//.test(word));
  return url ? new URL(url) : undefined;
}

export function composeDrift(document: ComposeDocument): string[] {
  const problems: string[] = [];
  const roles = composeRoles(document, problems);
  const byApp = (app: ServiceName) => roles.filter((role) => role.app === app && !role.migrate);
  for (const app of serviceNames) {
    if (byApp(app).length === 0) problems.push(`compose: no service runs ${app}`);
  }
  for (const role of roles) {
    const where = `compose service ${role.service}`;
    const service = document.services[role.service];
    if (role.migrate) {
      const known = migrateKeys();
      for (const key of Object.keys(role.environment)) if (!known.has(key)) problems.push(`${where}: ${key} is not a variable of the writer's schema`);
      for (const key of ['SHARD_NODES', 'PG_PASSWORD']) if (!role.environment[key]) problems.push(`${where}: required variable ${key} is missing`);
      continue;
    }
    problems.push(...describe(checkEnvironment(role.app, role.environment), where));
    const portVariable = serviceEnvironments[role.app].httpPortVariable;
    const url = healthcheckUrl(service.healthcheck?.test);
    if (!url) problems.push(`${where}: no HTTP health check`);
    else {
      if (url.pathname !== healthPaths.live) problems.push(`${where}: health check on ${url.pathname}, not ${healthPaths.live}`);
      if (url.port !== role.environment[portVariable])
        problems.push(`${where}: health check on port ${url.port} but ${portVariable}=${role.environment[portVariable]}`);
    }
    if (role.app === 'gateway') {
      const targets = (service.ports ?? []).map((port) => (typeof port === 'string' ? port.split(':').pop() : String(port.target)));
      if (!targets.includes(role.environment.PORT)) problems.push(`${where}: publishes ${JSON.stringify(targets)} but PORT=${role.environment.PORT}`);
      const writer = hostPorts(role.environment.WRITER_ADDR ?? '');
      const writers = byApp('writer');
      for (const { host, port } of writer) {
        const target = writers.find((candidate) => candidate.service === host);
        if (!target) problems.push(`${where}: WRITER_ADDR names ${host}, which is no writer service`);
        else if (String(port) !== target.environment.RPC_PORT)
          problems.push(`${where}: WRITER_ADDR port ${port} but ${host} listens on RPC_PORT=${target.environment.RPC_PORT}`);
      }
      const readers = byApp('reader');
      const listed = hostPorts(role.environment.READER_ADDRS ?? '');
      for (const { host, port } of listed) {
        const target = readers.find((candidate) => candidate.service === host);
        if (!target) problems.push(`${where}: READER_ADDRS names ${host}, which is no reader service`);
        else if (String(port) !== target.environment.RPC_PORT)
          problems.push(`${where}: READER_ADDRS port ${port} but ${host} listens on RPC_PORT=${target.environment.RPC_PORT}`);
      }
      for (const reader of readers) {
        if (!listed.some(({ host }) => host === reader.service)) problems.push(`${where}: READER_ADDRS leaves out ${reader.service}`);
      }
    } else if (service.ports && service.ports.length > 0) {
      problems.push(`${where}: only the gateway publishes ports`);
    }
  }
  problems.push(
    ...databaseRoleProblems(
      roles.map((role) => ({ ...role, where: `compose service ${role.service}` })),
      'compose',
    ),
  );
  const monitorIds = byApp('failover-monitor').map((role) => role.environment.MONITOR_ID);
  if (new Set(monitorIds).size !== monitorIds.length) problems.push(`compose: MONITOR_ID values repeat: ${monitorIds.join(', ')}`);

  const shardNodeValues = new Set(roles.map((role) => role.environment.SHARD_NODES).filter(Boolean));
  if (shardNodeValues.size !== 1) problems.push(`compose: services disagree on SHARD_NODES (${shardNodeValues.size} different values)`);
  const postgres = Object.entries(document.services).filter(([, service]) => /^(shortener\/)?postgres:/.test(service.image ?? ''));
  for (const value of shardNodeValues) {
    const shards = parseShardNodes(value);
    problems.push(...shardNodeProblems(shards, 'compose'));
    const hosts = shards.flatMap((shard) => shard.nodes.map((node) => node.host));
    for (const host of hosts) {
      const service = document.services[host];
      if (!service || !/^(shortener\/)?postgres:/.test(service.image ?? ''))
        problems.push(`compose: SHARD_NODES names ${host}, which is no PostgreSQL service`);
      else if (service.hostname !== host) problems.push(`compose: ${host} must have hostname ${host} (node-entrypoint.sh reads shard and index from it)`);
    }
    for (const [name] of postgres) if (!hosts.includes(name)) problems.push(`compose: PostgreSQL service ${name} is not in SHARD_NODES`);
    for (const shard of shards)
      for (const node of shard.nodes)
        if (node.port !== 5432) problems.push(`compose: ${node.name} port ${node.port}, but PostgreSQL listens on 5432 in its container`);
  }
  return problems;
}

export function composeTopology(document: ComposeDocument): Topology {
  const problems: string[] = [];
  const roles = composeRoles(document, problems);
  const shardNodes = parseShardNodes(roles.find((role) => role.environment.SHARD_NODES)?.environment.SHARD_NODES ?? '[]');
  return {
    shards: shardNodes.length,
    nodesPerShard: shardNodes.map((shard) => shard.nodes.length),
    nodeNames: Object.entries(document.services)
      .filter(([, service]) => /^(shortener\/)?postgres:/.test(service.image ?? ''))
      .map(([name]) => name)
      .sort(),
    readers: roles.filter((role) => role.app === 'reader').length,
    monitors: roles.filter((role) => role.app === 'failover-monitor').length,
    shardNodes,
  };
}

// --------------------------------------------------------------------------- kubernetes

function find(objects: KubernetesObject[], kind: string, name: string): KubernetesObject | undefined {
  return objects.find((object) => object.kind === kind && object.metadata.name === name);
}

function secretValues(secret: KubernetesObject): Record<string, string> {
  const data = Object.fromEntries(
    Object.entries((secret.data as Record<string, string>) ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString()]),
  );
  return { ...data, ...((secret.stringData as Record<string, string>) ?? {}) };
}

/** The environment a container gets, with every reference resolved in the rendered objects. */
export function containerEnvironment(
  objects: KubernetesObject[],
  container: Container,
  podName: string,
  problems: string[],
  where: string,
): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    if (source.prefix) problems.push(`${where}: envFrom prefixes are not expected`);
    const reference = source.configMapRef ?? source.secretRef;
    const kind = source.configMapRef ? 'ConfigMap' : 'Secret';
    const object = reference && find(objects, kind, reference.name);
    if (!object) {
      problems.push(`${where}: envFrom ${kind} ${reference?.name} does not exist`);
      continue;
    }
    Object.assign(environment, kind === 'ConfigMap' ? object.data : secretValues(object));
  }
  for (const entry of container.env ?? []) {
    if (entry.value !== undefined) environment[entry.name] = String(entry.value);
    else if (entry.valueFrom?.configMapKeyRef || entry.valueFrom?.secretKeyRef) {
      const reference = (entry.valueFrom.configMapKeyRef ?? entry.valueFrom.secretKeyRef)!;
      const kind = entry.valueFrom.configMapKeyRef ? 'ConfigMap' : 'Secret';
      const object = find(objects, kind, reference.name);
      const values = object ? (kind === 'ConfigMap' ? (object.data as Record<string, string>) : secretValues(object)) : undefined;
      if (!values || values[reference.key] === undefined)
        problems.push(`${where}: ${entry.name} refers to ${kind} ${reference.name} key ${reference.key}, which does not exist`);
      else environment[entry.name] = values[reference.key];
    } else if (entry.valueFrom?.fieldRef?.fieldPath === 'metadata.name') environment[entry.name] = podName;
    else problems.push(`${where}: cannot resolve ${entry.name}`);
  }
  return environment;
}

function probePort(container: Container, probe: Probe | undefined): number | undefined {
  const port = probe?.httpGet?.port;
  if (typeof port === 'number') return port;
  return container.ports?.find((candidate) => candidate.name === port)?.containerPort;
}

function memoryMiB(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const match = /^(\d+)(Mi|Gi|M|G)?$/.exec(value);
  if (!match) return undefined;
  const amount = Number(match[1]);
  switch (match[2]) {
    case 'Gi':
      return amount * 1024;
    case 'G':
      return (amount * 1e9) / 2 ** 20;
    case 'M':
      return (amount * 1e6) / 2 ** 20;
    case 'Mi':
      return amount;
    default:
      return amount / 2 ** 20;
  }
}

/** The Service port (number) that reaches container port `port` of the pods of `app`. */
function servicePortFor(objects: KubernetesObject[], serviceName: string, app: Deployed | undefined, containerPort: number): number | undefined {
  const service = find(objects, 'Service', serviceName);
  if (!service || !app) return undefined;
  const spec = service.spec as {
    selector?: Record<string, string>;
    ports?: { port: number; targetPort?: number | string }[];
  };
  const labels = podTemplateOf(app.object)?.metadata?.labels ?? {};
  if (!spec.selector || !Object.entries(spec.selector).every(([key, value]) => labels[key] === value)) return undefined;
  for (const port of spec.ports ?? []) {
    const target = port.targetPort ?? port.port;
    const resolved = typeof target === 'number' ? target : app.container.ports?.find((candidate) => candidate.name === target)?.containerPort;
    if (resolved === containerPort) return port.port;
  }
  return undefined;
}

interface Deployed {
  object: KubernetesObject;
  container: Container;
  app: ServiceName;
  environment: Record<string, string>;
}

export function kubernetesDrift(objects: KubernetesObject[], where = 'k8s'): string[] {
  const problems: string[] = [];
  const deployed: Deployed[] = [];
  const migrations: { where: string; app: ServiceName; migrate: boolean; environment: Record<string, string> }[] = [];
  for (const object of objects) {
    for (const container of containersOf(object)) {
      const app = serviceOfImage(container.image);
      if (!app) continue;
      const at = `${where} ${object.kind}/${object.metadata.name}`;
      const command = [...(container.command ?? []), ...(container.args ?? [])];
      const environment = containerEnvironment(objects, container, `${object.metadata.name}-5d8c7b9f4-x2x7q`, problems, at);
      if (object.kind === 'Job') {
        if (!command.includes(migrateScript)) problems.push(`${at}: a Job of the ${app} image that does not run ${migrateScript}`);
        if (app !== 'writer') problems.push(`${at}: the migrations run from the writer image, not ${app}`);
        const known = migrateKeys();
        for (const key of Object.keys(environment)) if (!known.has(key)) problems.push(`${at}: ${key} is not a variable of the writer's schema`);
        for (const key of ['SHARD_NODES', 'PG_PASSWORD']) if (!environment[key]) problems.push(`${at}: required variable ${key} is missing`);
        migrations.push({ where: at, app, migrate: true, environment });
        continue;
      }
      if (object.kind !== 'Deployment') problems.push(`${at}: services run as Deployments`);
      if (command[0] !== 'node' || command[command.length - 1] !== mainScript(app))
        problems.push(`${at}: command ${JSON.stringify(command)} does not start ${mainScript(app)}`);
      problems.push(...describe(checkEnvironment(app, environment), at));
      deployed.push({ object, container, app, environment });

      const portVariable = serviceEnvironments[app].httpPortVariable;
      const expectations: [keyof Container, string][] = [
        ['livenessProbe', healthPaths.live],
        ['startupProbe', healthPaths.live],
        ['readinessProbe', healthPaths.ready],
      ];
      for (const [kind, path] of expectations) {
        const probe = container[kind] as Probe | undefined;
        if (!probe) {
          if (kind !== 'startupProbe') problems.push(`${at}: no ${kind}`);
          continue;
        }
        if (probe.httpGet?.path !== path) problems.push(`${at}: ${kind} on ${probe.httpGet?.path ?? '(not HTTP)'}, not ${path}`);
        const port = probePort(container, probe);
        if (String(port) !== environment[portVariable]) problems.push(`${at}: ${kind} on port ${port} but ${portVariable}=${environment[portVariable]}`);
      }
      const requests = memoryMiB(container.resources?.requests?.memory);
      const limits = memoryMiB(container.resources?.limits?.memory);
      if (!requests || !limits || !container.resources?.requests?.cpu) problems.push(`${at}: resource requests (cpu, memory) and a memory limit are required`);
      else if (requests > 150 || limits < requests)
        problems.push(`${at}: memory request ${requests}Mi should stay within the 150 MB target, limit ${limits}Mi above it`);
      const heap = command.map((word) => /^--max-old-space-size=(\d+)$/.exec(word)).find(Boolean);
      if (heap && Number(heap[1]) > 128) problems.push(`${at}: a ${heap[1]} MB heap does not fit the 150 MB RSS target`);
      if (!find(objects, 'PodDisruptionBudget', object.metadata.name)) problems.push(`${at}: no PodDisruptionBudget`);
    }
  }
  for (const app of serviceNames) {
    if (!deployed.some((entry) => entry.app === app)) problems.push(`${where}: no Deployment runs ${app}`);
  }
  problems.push(
    ...databaseRoleProblems(
      [
        ...migrations,
        ...deployed.map((entry) => ({
          where: `${where} ${entry.object.kind}/${entry.object.metadata.name}`,
          app: entry.app,
          migrate: false,
          environment: entry.environment,
        })),
      ],
      where,
    ),
  );
  for (const app of ['reader', 'gateway'] as const) {
    const hpa = find(objects, 'HorizontalPodAutoscaler', app);
    const target = (hpa?.spec as { scaleTargetRef?: { kind: string; name: string } } | undefined)?.scaleTargetRef;
    const deployment = deployed.find((entry) => entry.app === app)?.object;
    if (!hpa || target?.kind !== 'Deployment' || target.name !== deployment?.metadata.name)
      problems.push(`${where}: no HorizontalPodAutoscaler scales the ${app} Deployment`);
  }

  const gateway = deployed.find((entry) => entry.app === 'gateway');
  const writer = deployed.find((entry) => entry.app === 'writer');
  const reader = deployed.find((entry) => entry.app === 'reader');
  if (gateway) {
    for (const [variable, target] of [
      ['WRITER_ADDR', writer],
      ['READER_ADDRS', reader],
    ] as const) {
      for (const { host, port } of hostPorts(gateway.environment[variable] ?? '')) {
        const servicePort = target && servicePortFor(objects, host, target, Number(target.environment.RPC_PORT));
        if (servicePort !== port)
          problems.push(
            `${where}: gateway ${variable} ${host}:${port} is not a Service port that reaches the ${target?.app ?? 'missing'} RPC_PORT ${target?.environment.RPC_PORT}`,
          );
      }
    }
    if (servicePortFor(objects, 'gateway', gateway, Number(gateway.environment.PORT)) === undefined)
      problems.push(`${where}: the Service gateway does not reach the gateway's PORT`);
  }

  const monitor = deployed.find((entry) => entry.app === 'failover-monitor');
  if (monitor) {
    const podSpec = podTemplateOf(monitor.object)!.spec;
    if (monitor.environment.NODE_CONTROL !== 'kubernetes') problems.push(`${where}: the failover monitor needs NODE_CONTROL=kubernetes`);
    // Exactly the API calls of its node control (KUBERNETES_API_CALLS), no more, no fewer.
    problems.push(...monitorRbacProblems(objects, podSpec.serviceAccountName, where));
  }

  problems.push(...databaseVolumeProblems(objects, where));
  problems.push(...securityProblems(objects, where));
  problems.push(...networkPolicyProblems(objects, where));
  const shards = kubernetesTopology(objects).shardNodes;
  problems.push(...shardNodeProblems(shards, where));
  shards.forEach((shard, index) => {
    const statefulSet = find(objects, 'StatefulSet', `pg-s${index}`);
    const spec = statefulSet?.spec as { serviceName?: string; replicas?: number } | undefined;
    const headless = spec?.serviceName ? find(objects, 'Service', spec.serviceName) : undefined;
    if (!statefulSet || !headless || (headless.spec as { clusterIP?: string }).clusterIP !== 'None') {
      problems.push(`${where}: shard ${index} needs the StatefulSet pg-s${index} with a headless Service`);
      return;
    }
    if (spec!.replicas !== shard.nodes.length)
      problems.push(`${where}: StatefulSet pg-s${index} has ${spec!.replicas} pods, SHARD_NODES ${shard.nodes.length}`);
    shard.nodes.forEach((node, ordinal) => {
      const expected = `pg-s${index}-${ordinal}.${spec!.serviceName}`;
      if (node.host !== expected) problems.push(`${where}: SHARD_NODES ${node.name} is on ${node.host}, the pod is ${expected}`);
      if (node.port !== 5432) problems.push(`${where}: SHARD_NODES ${node.name} port ${node.port}, PostgreSQL listens on 5432`);
    });
  });
  const databaseSets = objects.filter((object) => object.kind === 'StatefulSet' && /^pg-s\d+$/.test(object.metadata.name));
  if (databaseSets.length !== shards.length) problems.push(`${where}: ${databaseSets.length} database StatefulSets for ${shards.length} shards in SHARD_NODES`);
  return problems;
}

function networkPolicyProblems(objects: KubernetesObject[], where: string): string[] {
  const problems: string[] = [];
  type Peer = {
    podSelector?: { matchLabels?: Record<string, string> };
    namespaceSelector?: unknown;
    ipBlock?: unknown;
  };
  type Policy = {
    podSelector: { matchLabels?: Record<string, string>; matchExpressions?: unknown[] };
    policyTypes?: string[];
    ingress?: { from?: Peer[] }[];
  };
  const policies = objects.filter((object) => object.kind === 'NetworkPolicy').map((object) => ({ name: object.metadata.name, spec: object.spec as Policy }));
  const denyAll = policies.some(
    ({ spec }) => Object.keys(spec.podSelector ?? {}).length === 0 && spec.policyTypes?.includes('Ingress') && (spec.ingress ?? []).length === 0,
  );
  if (!denyAll) problems.push(`${where}: no default-deny ingress NetworkPolicy`);
  const services = new Set(['gateway', 'writer', 'reader', 'failover-monitor', 'migrate', 'kafka-topics']);
  for (const { name, spec } of policies) {
    const selected = spec.podSelector?.matchLabels?.['app.kubernetes.io/name'];
    for (const rule of spec.ingress ?? []) {
      if (!rule.from || rule.from.length === 0) {
        if (selected !== 'gateway')
          problems.push(`${where}: NetworkPolicy ${name} opens ${selected ?? 'several apps'} to everyone; only the gateway is public`);
      }
    }
    if (selected && ['postgres', 'redis', 'kafka'].includes(selected)) {
      for (const rule of spec.ingress ?? []) {
        for (const peer of rule.from ?? []) {
          const source = peer.podSelector?.matchLabels?.['app.kubernetes.io/name'];
          if (peer.namespaceSelector || peer.ipBlock || !source || !(services.has(source) || source === selected)) {
            problems.push(`${where}: NetworkPolicy ${name} lets ${JSON.stringify(peer)} reach ${selected}`);
          }
        }
      }
    }
  }
  for (const backend of ['postgres', 'redis', 'kafka']) {
    if (!policies.some(({ spec }) => spec.podSelector?.matchLabels?.['app.kubernetes.io/name'] === backend))
      problems.push(`${where}: no NetworkPolicy admits the services to ${backend}`);
  }
  return problems;
}

export function kubernetesTopology(objects: KubernetesObject[]): Topology {
  const common = objects.find((object) => object.kind === 'ConfigMap' && (object.data as Record<string, string> | undefined)?.SHARD_NODES);
  const shardNodes = parseShardNodes((common?.data as Record<string, string> | undefined)?.SHARD_NODES ?? '[]');
  const replicasOf = (app: string) => {
    const deployment = objects.find(
      (object) => object.kind === 'Deployment' && containersOf(object).some((container) => serviceOfImage(container.image) === app),
    );
    const hpa = objects.find(
      (object) =>
        object.kind === 'HorizontalPodAutoscaler' && (object.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name === deployment?.metadata.name,
    );
    const replicas = (deployment?.spec as { replicas?: number } | undefined)?.replicas ?? 1;
    const minimum = (hpa?.spec as { minReplicas?: number } | undefined)?.minReplicas;
    return minimum === undefined ? replicas : Math.min(replicas, minimum);
  };
  const databaseSets = objects.filter((object) => object.kind === 'StatefulSet' && /^pg-s\d+$/.test(object.metadata.name));
  return {
    shards: shardNodes.length,
    nodesPerShard: shardNodes.map((shard) => shard.nodes.length),
    nodeNames: databaseSets
      .flatMap((set) => {
        const shard = Number(set.metadata.name.slice('pg-s'.length));
        return Array.from({ length: (set.spec as { replicas: number }).replicas }, (_, ordinal) => `s${shard}n${ordinal}`);
      })
      .sort(),
    readers: replicasOf('reader'),
    monitors: replicasOf('failover-monitor'),
    shardNodes,
  };
}
