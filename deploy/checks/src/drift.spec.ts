import { loadCompose, type ComposeDocument } from './compose';
import { composeDrift, composeTopology, kubernetesDrift, kubernetesTopology } from './drift';
import { requiredKeys, serviceNames } from './environment';
import { clone } from './files';
import { containersOf, overlays, podTemplateOf, renderKustomization, type KubernetesObject } from './kustomize';
import { apiCallsInSource, monitorApiCalls, monitorRbacProblems, nodeControlSourceCalls } from './workloads';

// Generous: CI runs these beside builds and a whole stack on two cores.
jest.setTimeout(120_000);

describe('drift between libs/config, docker/compose.yaml and k8s/', () => {
  const compose = loadCompose();
  const rendered = Object.fromEntries(overlays.map((overlay) => [overlay, renderKustomization(overlay, { allowExampleEnvFiles: true }).objects]));

  it('knows the required variables of every service from the schemas', () => {
    expect(serviceNames).toEqual(['gateway', 'writer', 'reader', 'failover-monitor']);
    expect(requiredKeys('gateway')).toEqual(expect.arrayContaining(['ADMIN_TOKEN', 'SHARD_NODES', 'WRITER_ADDR', 'READER_ADDRS', 'KAFKA_BROKERS']));
    // One of REDIS_URL and REDIS_CLUSTER_NODES: each is optional alone, the schema requires one.
    expect(requiredKeys('gateway')).not.toContain('REDIS_URL');
    expect(requiredKeys('gateway')).not.toContain('PORT');
    expect(requiredKeys('failover-monitor')).toEqual(expect.arrayContaining(['PG_PASSWORD', 'HTTP_PORT', 'MONITOR_ID']));
  });

  it('compose: environments, ports, health checks, commands and SHARD_NODES agree with the schemas', () => {
    expect(composeDrift(compose)).toEqual([]);
  });

  it.each(overlays)('%s: environments, probes, commands, Services, RBAC, policies and SHARD_NODES agree', (overlay) => {
    expect(kubernetesDrift(rendered[overlay], overlay)).toEqual([]);
  });

  it('compose and every overlay run the same topology: 4 shards x 3 nodes, 2 readers, 2 monitors', () => {
    const expected = {
      shards: 4,
      nodesPerShard: [3, 3, 3, 3],
      nodeNames: Array.from({ length: 4 }, (_, shard) => [0, 1, 2].map((index) => `s${shard}n${index}`))
        .flat()
        .sort(),
      readers: 2,
      monitors: 2,
    };
    const { shardNodes: composeNodes, ...composeSizes } = composeTopology(compose);
    expect(composeSizes).toEqual(expected);
    for (const overlay of overlays) {
      const { shardNodes, ...sizes } = kubernetesTopology(rendered[overlay]);
      expect(sizes).toEqual(expected);
      expect(shardNodes.map((shard) => shard.nodes.map((node) => node.name))).toEqual(composeNodes.map((shard) => shard.nodes.map((node) => node.name)));
    }
  });

  describe('catches broken deployments', () => {
    const local = rendered['k8s/overlays/local'];
    const edit = (objects: KubernetesObject[], kind: string, name: string, change: (object: KubernetesObject) => void) => {
      const copy = clone(objects);
      change(copy.find((object) => object.kind === kind && object.metadata.name === name)!);
      return copy;
    };
    const composeEdit = (change: (document: ComposeDocument) => void) => {
      const copy = clone(compose);
      change(copy);
      return composeDrift(copy).join('\n');
    };

    it('compose: a missing required variable, an unknown one, a bad value', () => {
      expect(composeEdit((document) => delete (document.services.gateway.environment as Record<string, string>).ADMIN_TOKEN)).toMatch(
        /gateway: required variable ADMIN_TOKEN is missing/,
      );
      expect(composeEdit((document) => ((document.services.writer.environment as Record<string, string>).PG_PASWORD = 'x'))).toMatch(
        /writer: PG_PASWORD is not a variable/,
      );
      expect(composeEdit((document) => ((document.services['reader-0'].environment as Record<string, string>).KAFKA_BROKERS = 'kafka'))).toMatch(
        /reader-0: the schema rejects KAFKA_BROKERS/,
      );
      expect(composeEdit((document) => ((document.services.gateway.environment as Record<string, string>).ADMIN_TOKEN = '${ADMIN_TOKN:?x}'))).toMatch(
        /ADMIN_TOKN/,
      );
      expect(composeEdit((document) => delete (document.services.writer.environment as Record<string, string>).REDIS_CLUSTER_NODES)).toMatch(
        /writer: the schema rejects REDIS_URL: required \(or REDIS_CLUSTER_NODES/,
      );
    });

    it('compose: health check port, command, addresses and database nodes', () => {
      expect(composeEdit((document) => ((document.services.writer.environment as Record<string, string>).HTTP_PORT = '4102'))).toMatch(
        /writer: health check on port 4101 but HTTP_PORT=4102/,
      );
      expect(composeEdit((document) => (document.services['reader-1'].command = ['node', 'dist/apps/writer/src/main.js']))).toMatch(/reader-1: command/);
      expect(composeEdit((document) => ((document.services.gateway.environment as Record<string, string>).READER_ADDRS = 'reader-0:4200'))).toMatch(
        /READER_ADDRS leaves out reader-1/,
      );
      expect(composeEdit((document) => ((document.services.gateway.environment as Record<string, string>).WRITER_ADDR = 'writer:4101'))).toMatch(
        /WRITER_ADDR port 4101/,
      );
      expect(composeEdit((document) => delete document.services.s3n2)).toMatch(/SHARD_NODES names s3n2, which is no PostgreSQL service/);
      expect(composeEdit((document) => (document.services.writer.ports = ['4100:4100']))).toMatch(/only the gateway publishes ports/);
    });

    it('compose and k8s: every database service connects as its own role with the password the migrations set', () => {
      const env = (document: ComposeDocument, service: string) => document.services[service].environment as Record<string, string>;
      expect(composeEdit((document) => (env(document, 'writer').PG_USER = 'postgres'))).toMatch(
        /writer: PG_USER is postgres, not the writer's own role shortener_writer/,
      );
      expect(composeEdit((document) => (env(document, 'reader-0').PG_PASSWORD = '${PG_PASSWORD}'))).toMatch(
        /reader-0: PG_PASSWORD is the superuser's password/,
      );
      expect(composeEdit((document) => (env(document, 'failover-monitor-1').PG_PASSWORD = '${PG_READER_PASSWORD}'))).toMatch(
        /failover-monitor-1: PG_PASSWORD is not the PG_MONITOR_PASSWORD the migrations set/,
      );
      expect(composeEdit((document) => delete env(document, 'migrate').PG_READER_PASSWORD)).toMatch(/migrate: PG_READER_PASSWORD is missing/);
      const problems = (objects: KubernetesObject[]) => kubernetesDrift(objects, 'local').join('\n');
      const setEnv = (name: string, value: { value?: string; valueFrom?: unknown }) => (object: KubernetesObject) => {
        const entries = containersOf(object)[0].env!;
        entries.splice(
          entries.findIndex((entry) => entry.name === name),
          1,
          { name, ...value } as (typeof entries)[number],
        );
      };
      expect(problems(edit(local, 'Deployment', 'reader', setEnv('PG_USER', { value: 'postgres' })))).toMatch(
        /reader: PG_USER is postgres, not the reader's own role/,
      );
      expect(
        problems(
          edit(local, 'Deployment', 'writer', setEnv('PG_PASSWORD', { valueFrom: { secretKeyRef: { name: 'shortener-secrets', key: 'pg-password' } } })),
        ),
      ).toMatch(/writer: PG_PASSWORD is the superuser's password/);
    });

    it('k8s: probes, variables, commands, Services and database pods', () => {
      const problems = (objects: KubernetesObject[]) => kubernetesDrift(objects, 'local').join('\n');
      expect(problems(edit(local, 'Deployment', 'reader', (object) => (containersOf(object)[0].readinessProbe!.httpGet!.path = '/health')))).toMatch(
        /readinessProbe on \/health, not \/health\/ready/,
      );
      expect(problems(edit(local, 'Deployment', 'writer', (object) => (containersOf(object)[0].ports![1].containerPort = 4102)))).toMatch(
        /livenessProbe on port 4102 but HTTP_PORT=4101/,
      );
      expect(problems(edit(local, 'Deployment', 'gateway', (object) => containersOf(object)[0].env!.push({ name: 'NODE_ENV', value: 'production' })))).toMatch(
        /NODE_ENV is not a variable/,
      );
      expect(
        problems(
          edit(
            local,
            'Deployment',
            'gateway',
            (object) => (containersOf(object)[0].env = containersOf(object)[0].env!.filter((entry) => entry.name !== 'ADMIN_TOKEN')),
          ),
        ),
      ).toMatch(/required variable ADMIN_TOKEN is missing/);
      expect(
        problems(edit(local, 'Deployment', 'failover-monitor', (object) => (containersOf(object)[0].command = ['node', 'dist/apps/reader/src/main.js']))),
      ).toMatch(/does not start dist\/apps\/failover-monitor/);
      expect(problems(edit(local, 'Service', 'reader', (object) => ((object.spec as { ports: { port: number }[] }).ports[0].port = 4300)))).toMatch(
        /READER_ADDRS reader:4200/,
      );
      expect(problems(edit(local, 'StatefulSet', 'pg-s2', (object) => ((object.spec as { replicas: number }).replicas = 2)))).toMatch(
        /pg-s2 has 2 pods, SHARD_NODES 3/,
      );
      expect(
        problems(
          edit(
            local,
            'ConfigMap',
            'shortener-common',
            (object) =>
              ((object.data as Record<string, string>).SHARD_NODES = (object.data as Record<string, string>).SHARD_NODES.replace(
                'pg-s1-2.pg-s1',
                'pg-s1-3.pg-s1',
              )),
          ),
        ),
      ).toMatch(/s1n2 is on pg-s1-3.pg-s1/);
      expect(problems(edit(local, 'Secret', 'shortener-secrets', (object) => delete (object.stringData as Record<string, string>)['admin-token']))).toMatch(
        /ADMIN_TOKEN refers to Secret shortener-secrets key admin-token/,
      );
      expect(
        problems(
          edit(local, 'NetworkPolicy', 'redis-from-services', (object) => ((object.spec as { ingress: unknown[] }).ingress = [{ ports: [{ port: 6379 }] }])),
        ),
      ).toMatch(/opens redis to everyone/);
      expect(problems(local.filter((object) => !(object.kind === 'HorizontalPodAutoscaler' && object.metadata.name === 'reader')))).toMatch(
        /no HorizontalPodAutoscaler scales the reader/,
      );
      expect(problems(edit(local, 'Deployment', 'gateway', (object) => (containersOf(object)[0].resources!.requests!.memory = '512Mi')))).toMatch(
        /150 MB target/,
      );
    });

    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
    const rules = (object: KubernetesObject) => object.rules as Rule[];
    const problems = (objects: KubernetesObject[]) => kubernetesDrift(objects, 'local').join('\n');

    it("k8s RBAC: the monitor's Role grants exactly the API calls its node control makes", () => {
      // The list beside the code is what the code calls (read from its source), and the Role grants exactly it.
      const source = nodeControlSourceCalls();
      expect(source.unreadable).toEqual([]);
      const names = (calls: readonly { group: string; resource: string; verb: string }[]) =>
        [...new Set(calls.map((c) => `${c.verb} ${c.group}/${c.resource}`))].sort();
      expect(names(source.calls)).toEqual(names(monitorApiCalls));
      expect(names(monitorApiCalls)).toEqual(['delete /pods', 'get /pods', 'patch /pods']);
      for (const overlay of overlays) expect(monitorRbacProblems(rendered[overlay], 'failover-monitor', overlay)).toEqual([]);
    });

    it('k8s RBAC: a grant nothing uses fails (an extra verb, resource, wildcard or cluster-wide binding)', () => {
      expect(problems(edit(local, 'Role', 'failover-monitor', (object) => rules(object)[0].verbs.push('list')))).toMatch(
        /Role failover-monitor grants list pods, which no call of apps\/failover-monitor\/src\/kubernetes-node-control.ts makes/,
      );
      expect(
        problems(edit(local, 'Role', 'failover-monitor', (object) => rules(object).push({ apiGroups: [''], resources: ['pods/exec'], verbs: ['create'] }))),
      ).toMatch(/grants create pods\/exec, which no call/);
      expect(
        problems(
          edit(local, 'Role', 'failover-monitor', (object) =>
            rules(object).push({ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get'] }),
          ),
        ),
      ).toMatch(/grants get coordination.k8s.io\/leases, which no call/);
      expect(problems(edit(local, 'Role', 'failover-monitor', (object) => (rules(object)[0].verbs = ['*'])))).toMatch(/grants a wildcard/);
      const clusterWide = clone(local);
      clusterWide.push(
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'ClusterRole',
          metadata: { name: 'monitor-nodes' },
          rules: [{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] }],
        },
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'ClusterRoleBinding',
          metadata: { name: 'monitor-nodes' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'monitor-nodes' },
          subjects: [{ kind: 'ServiceAccount', name: 'failover-monitor', namespace: 'shortener' }],
        },
      );
      expect(problems(clusterWide)).toMatch(/needs no cluster-wide rights[\s\S]*grants get nodes, which no call/);
    });

    it('k8s RBAC: a call without a grant fails (a verb taken away, a call the code makes that the list leaves out)', () => {
      expect(problems(edit(local, 'Role', 'failover-monitor', (object) => (rules(object)[0].verbs = ['get', 'delete'])))).toMatch(
        /Role does not allow patch pods, which its node control calls/,
      );
      expect(problems(edit(local, 'Role', 'failover-monitor', (object) => (rules(object)[0].resources = ['pods/log'])))).toMatch(
        /grants get pods\/log[\s\S]*does not allow get pods, which its node control calls/,
      );
      expect(problems(local.filter((object) => object.kind !== 'RoleBinding' || object.metadata.name !== 'failover-monitor'))).toMatch(
        /needs its ServiceAccount bound to a Role/,
      );
      // A call in the code that KUBERNETES_API_CALLS does not list (so the Role would not grant it either).
      const withExec = apiCallsInSource(
        "const a = await this.call('GET', `/api/v1/namespaces/${ns}/pods/${pod}`);\n" +
          "await this.call('POST', `/api/v1/namespaces/${ns}/pods/${pod}/exec?command=pg_ctl`);\n" +
          "await this.call('GET', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`);\n" +
          'await this.call(method, path);\n',
      );
      expect(withExec.calls).toEqual([
        { group: '', resource: 'pods', verb: 'get' },
        { group: '', resource: 'pods/exec', verb: 'create' },
        { group: 'coordination.k8s.io', resource: 'leases', verb: 'list' },
      ]);
      expect(withExec.unreadable).toEqual(['this.call(method, path);']);
      expect(monitorRbacProblems(local, 'failover-monitor', 'local', monitorApiCalls, withExec).join('\n')).toMatch(
        /calls create pods\/exec, which KUBERNETES_API_CALLS does not list[\s\S]*calls list coordination.k8s.io\/leases[\s\S]*cannot tell which API call/,
      );
      // And a call listed without a grant.
      expect(
        monitorRbacProblems(local, 'failover-monitor', 'local', [...monitorApiCalls, { group: '', resource: 'pods/exec', verb: 'create' }]).join('\n'),
      ).toMatch(/does not allow create pods\/exec/);
    });

    type Mount = { name: string; mountPath: string; subPath?: string };
    type PodVolumes = { volumes?: { name: string }[]; securityContext?: Record<string, unknown> };
    const mountsOf = (object: KubernetesObject, container = 0) => (containersOf(object)[container] as unknown as { volumeMounts: Mount[] }).volumeMounts;
    const podOf = (object: KubernetesObject) => podTemplateOf(object)!.spec as unknown as PodVolumes;

    it('k8s volumes: the PostgreSQL StatefulSets keep data on a volumeClaimTemplate at the data directory, and the pgBackRest repository on its claim', () => {
      for (const overlay of overlays) expect(kubernetesDrift(rendered[overlay], overlay).filter((problem) => /StatefulSet\/pg-s/.test(problem))).toEqual([]);
      expect(
        problems(edit(local, 'StatefulSet', 'pg-s1', (object) => ((object.spec as { volumeClaimTemplates: unknown[] }).volumeClaimTemplates = []))),
      ).toMatch(/pg-s1: mounts data, which is neither a volume nor a volumeClaimTemplate[\s\S]*pg-s1: no volumeClaimTemplate data/);
      expect(
        problems(
          edit(
            local,
            'StatefulSet',
            'pg-s2',
            (object) =>
              ((object.spec as { volumeClaimTemplates: { spec: { accessModes: string[] } }[] }).volumeClaimTemplates[0].spec.accessModes = ['ReadWriteMany']),
          ),
        ),
      ).toMatch(/pg-s2: volumeClaimTemplate data must be ReadWriteOnce/);
      expect(problems(edit(local, 'StatefulSet', 'pg-s0', (object) => (mountsOf(object).find((mount) => mount.name === 'data')!.mountPath = '/data')))).toMatch(
        /pg-s0: volumeClaimTemplate data must be mounted at \/var\/lib\/postgresql\/data \(mounted at \/data\)/,
      );
      expect(
        problems(edit(local, 'StatefulSet', 'pg-s3', (object) => (containersOf(object)[0].env!.find((entry) => entry.name === 'PGDATA')!.value = '/pgdata'))),
      ).toMatch(/pg-s3: PGDATA=\/pgdata is not on the data claim/);
      expect(
        problems(
          edit(local, 'StatefulSet', 'pg-s0', (object) =>
            mountsOf(object).splice(
              mountsOf(object).findIndex((mount) => mount.name === 'pgbackrest-repo'),
              1,
            ),
          ),
        ),
      ).toMatch(/pg-s0: PGBACKREST_REPO1_PATH=\/var\/lib\/pgbackrest is not a mounted PersistentVolumeClaim/);
      expect(problems(local.filter((object) => !(object.kind === 'PersistentVolumeClaim' && object.metadata.name === 'pgbackrest-repo')))).toMatch(
        /the pgBackRest repository claim pgbackrest-repo does not exist/,
      );
      expect(
        problems(edit(local, 'StatefulSet', 'pg-s1', (object) => (mountsOf(object).find((mount) => mount.subPath === 'backup.sh')!.mountPath = '/backup.sh'))),
      ).toMatch(/pg-s1: \/opt\/shortener\/backup.sh must be backup.sh of the ConfigMap postgres-scripts/);
    });

    it('k8s security: /tmp is an emptyDir wherever the root file system is read-only, and every pod but the PostgreSQL nodes runs as non-root', () => {
      for (const overlay of overlays) {
        const found = kubernetesDrift(rendered[overlay], overlay).filter((problem) => /root|\/tmp/.test(problem));
        expect(found).toEqual([]);
      }
      expect(
        problems(
          edit(local, 'Deployment', 'reader', (object) =>
            mountsOf(object).splice(
              mountsOf(object).findIndex((mount) => mount.mountPath === '/tmp'),
              1,
            ),
          ),
        ),
      ).toMatch(/Deployment\/reader: container reader has a read-only root file system but no writable emptyDir on \/tmp/);
      expect(problems(edit(local, 'Deployment', 'gateway', (object) => (podOf(object).volumes = [{ name: 'tmp' }])))).toMatch(
        /Deployment\/gateway: container gateway has a read-only root file system but no writable emptyDir on \/tmp/,
      );
      expect(problems(edit(local, 'CronJob', 'pg-backup', (object) => delete podOf(object).volumes))).toMatch(
        /CronJob\/pg-backup: container backup has a read-only root file system/,
      );
      for (const [kind, name] of [
        ['Deployment', 'gateway'],
        ['Deployment', 'writer'],
        ['Deployment', 'reader'],
        ['Deployment', 'failover-monitor'],
        ['Job', 'migrate'],
      ]) {
        expect(problems(edit(local, kind, name, (object) => delete podOf(object).securityContext!.runAsNonRoot))).toMatch(
          new RegExp(`${kind}/${name}: container \\S+ may run as root \\(runAsNonRoot is not set\\)`),
        );
      }
      expect(problems(edit(local, 'Deployment', 'writer', (object) => (podOf(object).securityContext!.runAsUser = 0)))).toMatch(
        /Deployment\/writer: container writer runs as uid 0/,
      );
    });
  });
});
