import { readFileSync } from 'node:fs';
import type { NodeAddress } from '@shortener/topology';
import type { NodeControl } from './node-control';

const API = 'https://kubernetes.default.svc';
const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * Node control on Kubernetes, through the API server with the pod's service account
 * (RBAC in k8s/base). A node's pod is the first DNS label of its host in SHARD_NODES
 * (`pg-s0-1.pg-s0` -> pod `pg-s0-1`). Fencing deletes the pod with
 * no grace period; the StatefulSet recreates it, and its entrypoint, finding that the
 * topology names another primary, rewinds it (pg_rewind) and starts it as a standby of
 * that primary. Rejoin and start are therefore the same delete; stop is a graceful delete.
 */
export class KubernetesNodeControl implements NodeControl {
  private readonly namespace = readFileSync(`${SERVICE_ACCOUNT}/namespace`, 'utf8').trim();
  private readonly pods: Map<string, string>;

  constructor(nodes: { name: string; host: string }[]) {
    this.pods = new Map(nodes.map((node) => [node.name, podName(node.host)]));
  }

  async fence(node: string): Promise<void> {
    await this.deletePod(node, 0);
  }

  async rejoin(node: string, _primary: NodeAddress, _options?: { fromScratch?: boolean }): Promise<void> {
    await this.deletePod(node, 0);
  }

  async start(node: string): Promise<void> {
    await this.deletePod(node, 0);
  }

  async stop(node: string): Promise<void> {
    await this.deletePod(node, 30);
  }

  async isRunning(node: string): Promise<boolean> {
    const response = await this.request('GET', `/api/v1/namespaces/${this.namespace}/pods/${this.pod(node)}`);
    if (response.status === 404) return false;
    const pod = (await response.json()) as { status?: { phase?: string } };
    return pod.status?.phase === 'Running';
  }

  private async deletePod(node: string, graceSeconds: number): Promise<void> {
    const response = await this.request(
      'DELETE',
      `/api/v1/namespaces/${this.namespace}/pods/${this.pod(node)}?gracePeriodSeconds=${graceSeconds}`,
    );
    if (!response.ok && response.status !== 404) throw new Error(`deleting pod of ${node}: HTTP ${response.status}`);
  }

  private pod(node: string): string {
    const pod = this.pods.get(node);
    if (!pod) throw new RangeError(`unknown node ${node}`);
    return pod;
  }

  private request(method: string, path: string): Promise<Response> {
    const token = readFileSync(`${SERVICE_ACCOUNT}/token`, 'utf8').trim();
    return fetch(`${API}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
  }
}

export function podName(host: string): string {
  return host.split('.')[0];
}
