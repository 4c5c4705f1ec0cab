// Static checks of docker/ and k8s/: parsing, schemas, and drift against libs/config.
export default {
  displayName: 'deploy-checks',
  preset: '../../jest.preset.js',
  rootDir: __dirname,
  testMatch: ['<rootDir>/**/*.spec.ts'],
};
