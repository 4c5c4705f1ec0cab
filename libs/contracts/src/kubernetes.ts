/** The label the `pg-s<n>-primary` Services select (k8s/base/postgres.yaml). */
export const ROLE_LABEL = 'shortener.io/role';

/**
 * Every Kubernetes API request the failover monitor's node control makes
 * (apps/failover-monitor/src/kubernetes-node-control.ts), as RBAC names them. A contract
 * between that code and k8s/base/rbac.yaml: the Role grants the monitor exactly these, and
 * deploy/checks fails when a grant is not listed here, a listed call is not granted, or a
 * call of the node control is not listed.
 */
export const KUBERNETES_API_CALLS: readonly { group: string; resource: string; verb: string; usedBy: string }[] = [
  { group: '', resource: 'pods', verb: 'get', usedBy: 'fence (until the pod is gone), isRunning' },
  { group: '', resource: 'pods', verb: 'patch', usedBy: `markRoles (the ${ROLE_LABEL} label)` },
  { group: '', resource: 'pods', verb: 'delete', usedBy: 'fence, rejoin, start, stop' },
];
