import { Topics } from '@shortener/contracts';
import { clone, listYamlFiles, loadYamlFile } from './files';
import { typeCheckObjects, validateAgainstSchema } from './kubernetes';
import { containersOf, isKustomizationFile, kustomizationRoots, overlays, renderKustomization, strategicMerge, type KubernetesObject } from './kustomize';

// Generous: CI runs these beside builds and a whole stack on two cores.
jest.setTimeout(120_000);

describe('Kubernetes manifests', () => {
  const rendered = Object.fromEntries(kustomizationRoots.map((root) => [root, renderKustomization(root, { allowExampleEnvFiles: true })]));

  it.each(kustomizationRoots)('%s renders', (root) => {
    expect(rendered[root].objects.length).toBeGreaterThan(20);
  });

  it('uses every YAML file under k8s/ in some render (no stray manifests)', () => {
    const used = new Set(Object.values(rendered).flatMap((render) => render.files));
    const stray = listYamlFiles('k8s').filter((file) => !used.has(file));
    expect(stray).toEqual([]);
  });

  it.each(kustomizationRoots)('every object of %s is valid against the Kubernetes schemas', (root) => {
    const problems = rendered[root].objects
      .map((object) => ({
        object: `${object.kind}/${object.metadata.name}`,
        problems: validateAgainstSchema(object),
      }))
      .filter((entry) => entry.problems.length > 0);
    expect(problems).toEqual([]);
  });

  it.each(kustomizationRoots)('no object of %s has an unknown or mistyped field', (root) => {
    const objects = rendered[root].objects;
    const problems = typeCheckObjects(objects)
      .map((list, index) => ({
        object: `${objects[index].kind}/${objects[index].metadata.name}`,
        problems: list,
      }))
      .filter((entry) => entry.problems.length > 0);
    expect(problems).toEqual([]);
  });

  it('every manifest file under k8s/ that is a Kubernetes object is valid on its own too', () => {
    for (const file of listYamlFiles('k8s').filter((name) => !isKustomizationFile(name))) {
      for (const document of loadYamlFile(file) as KubernetesObject[]) {
        // Patches are partial objects: schema-valid, but they may lack required fields.
        const problems = validateAgainstSchema(document).filter((problem) => !/must have required property/.test(problem));
        expect({ file, kind: document.kind, problems }).toEqual({
          file,
          kind: document.kind,
          problems: [],
        });
      }
    }
  });

  it('production has a PodMonitor for the Prometheus operator: /metrics of the four services on their http port', () => {
    const objects = rendered['k8s/overlays/production'].objects;
    const monitor = objects.find((object) => object.kind === 'PodMonitor')!;
    expect(monitor).toBeDefined();
    expect(monitor.metadata.namespace).toBe('shortener');
    const spec = (
      monitor as unknown as { spec: { selector: { matchExpressions: { values: string[] }[] }; podMetricsEndpoints: { port: string; path: string }[] } }
    ).spec;
    expect(spec.selector.matchExpressions[0].values.sort()).toEqual(['failover-monitor', 'gateway', 'reader', 'writer']);
    expect(spec.podMetricsEndpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics' })]);
    // Every selected pod has a container port named http.
    for (const name of spec.selector.matchExpressions[0].values) {
      const workload = objects.find((object) => object.kind === 'Deployment' && object.metadata.name === name)!;
      const ports = containersOf(workload).flatMap((container) => (container as unknown as { ports?: { name?: string }[] }).ports ?? []);
      expect({ name, http: ports.some((port) => port.name === 'http') }).toEqual({ name, http: true });
    }
    // A misspelt field of the operator's kind is caught like a core one.
    const broken = clone(monitor) as unknown as { spec: { podMetricsEndpoints: Record<string, unknown>[] } };
    broken.spec.podMetricsEndpoints[0].prot = 'http';
    expect(typeCheckObjects([broken]).flat().join('\n')).toMatch(/prot/);
  });

  it('rejects broken objects', () => {
    const objects = rendered['k8s/overlays/local'].objects;
    const deployment = clone(objects.find((object) => object.kind === 'Deployment')!);
    const container = containersOf(deployment)[0] as unknown as Record<string, unknown>;

    const typo = clone(deployment);
    (containersOf(typo)[0] as unknown as Record<string, unknown>).livenessProb = container.livenessProbe;
    expect(typeCheckObjects([typo])[0].join('\n')).toMatch(/livenessProb/);

    const wrongType = clone(deployment);
    (containersOf(wrongType)[0].ports![0] as { containerPort: unknown }).containerPort = 'http';
    expect(validateAgainstSchema(wrongType).join('\n')).toMatch(/containerPort must be integer/);

    const noSelector = clone(deployment);
    delete (noSelector.spec as Record<string, unknown>).selector;
    expect(validateAgainstSchema(noSelector).join('\n')).toMatch(/selector/);

    expect(validateAgainstSchema({ apiVersion: 'apps/v1', kind: 'Deploymnet', metadata: { name: 'x' } })).toEqual([
      'unknown apiVersion/kind: apps/v1/Deploymnet',
    ]);
  });

  it('renders the overlays: namespace, images, replicas, patches, generated Secret', () => {
    for (const overlay of overlays) {
      const objects = rendered[overlay].objects;
      for (const object of objects) {
        if (object.kind !== 'Namespace')
          expect({ object: object.metadata.name, namespace: object.metadata.namespace }).toEqual({
            object: object.metadata.name,
            namespace: 'shortener',
          });
      }
      expect(objects.find((object) => object.kind === 'Secret' && object.metadata.name === 'shortener-secrets')).toBeDefined();
    }
    const production = rendered['k8s/overlays/production'].objects;
    const gateway = production.find((object) => object.kind === 'Deployment' && object.metadata.name === 'gateway')!;
    expect(containersOf(gateway)[0].image).toBe('registry.example.com/shortener/gateway:0.1.0');
    expect((gateway.spec as { replicas: number }).replicas).toBe(3);
    expect(containersOf(gateway)[0].env).toEqual(expect.arrayContaining([{ name: 'PUBLIC_BASE_URL', value: 'https://sho.example.com' }]));
    expect(production.find((object) => object.kind === 'Service' && object.metadata.name === 'gateway')!.spec).toMatchObject({ type: 'LoadBalancer' });
    expect(rendered['k8s/overlays/production'].notes.join('\n')).toMatch(/secrets\.env/);
    const local = rendered['k8s/overlays/local'].objects;
    expect(containersOf(local.find((object) => object.kind === 'Deployment' && object.metadata.name === 'reader')!)[0].image).toBe('shortener/reader:local');
  });

  it('creates every Kafka topic of libs/contracts in the kafka-topics Job', () => {
    const job = rendered['k8s/base'].objects.find((object) => object.kind === 'Job' && object.metadata.name === 'kafka-topics')!;
    const script = (containersOf(job)[0].args ?? []).join('\n');
    for (const topic of Object.values(Topics)) expect(script).toContain(`--topic ${topic} `);
    expect(script).toMatch(/--topic cluster\.topology --partitions 1 .*cleanup\.policy=compact/);
  });

  it('merges patches strategically (containers and env by name, service ports by port)', () => {
    const base = {
      spec: {
        containers: [{ name: 'a', env: [{ name: 'X', value: '1' }], image: 'i' }],
        ports: [{ port: 1, name: 'p' }],
      },
    };
    const patch = {
      spec: {
        containers: [{ name: 'a', env: [{ name: 'Y', value: '2' }] }],
        ports: [{ port: 1, nodePort: 3 }],
      },
    };
    expect(strategicMerge(base, patch, [])).toEqual({
      spec: {
        containers: [
          {
            name: 'a',
            env: [
              { name: 'X', value: '1' },
              { name: 'Y', value: '2' },
            ],
            image: 'i',
          },
        ],
        ports: [{ port: 1, name: 'p', nodePort: 3 }],
      },
    });
  });
});
