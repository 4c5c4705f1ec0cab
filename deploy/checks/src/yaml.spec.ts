import { listYamlFiles, loadYamlFile, parseYamlDocuments } from './files';

// Generous: CI runs these beside builds and a whole stack on two cores.
jest.setTimeout(120_000);

describe('YAML under docker/ and k8s/', () => {
  const files = listYamlFiles('docker', 'k8s');

  it('finds the compose file and the kustomizations', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'docker/compose.yaml',
        'k8s/base/kustomization.yaml',
        'k8s/overlays/local/kustomization.yaml',
        'k8s/overlays/production/kustomization.yaml',
      ]),
    );
  });

  it.each(files)('%s parses (every document, merge keys, no duplicate keys)', (file) => {
    const documents = loadYamlFile(file);
    expect(documents.length).toBeGreaterThan(0);
    for (const document of documents) expect(typeof document).toBe('object');
  });

  it('rejects broken YAML', () => {
    expect(() => parseYamlDocuments('a: 1\n  b: 2\n', 'bad.yaml')).toThrow(/bad\.yaml/);
    expect(() => parseYamlDocuments('a: 1\na: 2\n', 'duplicate.yaml')).toThrow(/duplicate\.yaml/);
    expect(() => parseYamlDocuments('a: *nowhere\n', 'alias.yaml')).toThrow(/alias\.yaml/);
    expect(() => parseYamlDocuments('kind: A\n---\nkind: [B\n', 'second.yaml')).toThrow(/second\.yaml/);
  });
});
