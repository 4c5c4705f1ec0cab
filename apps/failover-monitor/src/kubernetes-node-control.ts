import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { ROLE_LABEL } from '@shortener/contracts';
import type { NodeAddress } from '@shortener/topology';
import type { NodeControl } from './node-control';

/** Where the API server is and where the pod's service account is mounted. */
export interface KubernetesApi {
  url: string;
  serviceAccountDir: string;
  /** Deadline of one API call. */
  timeoutMs: number;
  /** How long a fence waits for the kubelet to report the pod gone. */
  fenceTimeoutMs?: number;
  /** Between two reads of a pod being fenced. */
  pollMs?: number;
}

export const IN_CLUSTER_API: KubernetesApi = {
  url: 'https://kubernetes.default.svc',
  serviceAccountDir: '/var/run/secrets/kubernetes.io/serviceaccount',
  timeoutMs: 5000,
  fenceTimeoutMs: 6000,
  pollMs: 200,
};

/**
 * Node control on Kubernetes, through the API server with the pod's service account
 * (RBAC in k8s/base). A node's pod is the first DNS label of its host in SHARD_NODES
 * (`pg-s0-1.pg-s0` -> pod `pg-s0-1`). The StatefulSet recreates a deleted pod, and its
 * entrypoint, finding that the topology names another primary, rewinds it (pg_rewind)
 * and starts it as a standby of that primary. Rejoin and start are therefore a delete;
 * stop is a graceful delete. Pods carry their role as a label, so that Services can route
 * to the primary.
 *
 * Fence: delete the pod with a 1 s grace period, not a forced delete (grace 0 removes the
 * API object at once while the container may still run on a node the API server cannot
 * reach), then read it until it is gone or replaced by a pod of another uid: the API
 * server removes the object only once the kubelet has reported its containers dead. A
 * pod still there after `fenceTimeoutMs` (its node is cut off, the kubelet does not
 * answer) is not fenced: `fence` rejects.
 */
export class KubernetesNodeControl implements NodeControl {
  readonly fenceMethod = 'pod delete (1 s grace), awaited until the kubelet reports the pod gone';
  private readonly namespace: string;
  private readonly pods: Map<string, string>;
  // The API server's certificate is signed by the cluster's own CA, which Node does not trust by default.
  private readonly clusterCa: Buffer | undefined;

  constructor(
    nodes: { name: string; host: string }[],
    private readonly api: KubernetesApi = IN_CLUSTER_API,
  ) {
    this.namespace = readFileSync(`${api.serviceAccountDir}/namespace`, 'utf8').trim();
    const caFile = `${api.serviceAccountDir}/ca.crt`;
    this.clusterCa = existsSync(caFile) ? readFileSync(caFile) : undefined;
    this.pods = new Map(nodes.map((node) => [node.name, podName(node.host)]));
  }

  async fence(node: string): Promise<void> {
    const before = await this.podUid(node);
    if (before === null) return;
    await this.deletePod(node, 1);
    const deadline = Date.now() + (this.api.fenceTimeoutMs ?? 6000);
    for (;;) {
      const now: string | null = await this.podUid(node).catch((): string => before);
      if (now !== before) return;
      if (Date.now() >= deadline) throw new Error(`pod of ${node} still present ${this.api.fenceTimeoutMs ?? 6000} ms after its delete: not fenced`);
      await new Promise((resolve) => setTimeout(resolve, this.api.pollMs ?? 200));
    }
  }

  /** The pod's uid, null when there is none. */
  private async podUid(node: string): Promise<string | null> {
    const response = await this.call('GET', `/api/v1/namespaces/${this.namespace}/pods/${this.pod(node)}`);
    if (response.status === 404) return null;
    if (response.status !== 200) throw new Error(`reading pod of ${node}: HTTP ${response.status}`);
    const pod = JSON.parse(response.body) as { metadata?: { uid?: string } };
    return pod.metadata?.uid ?? '';
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
    const response = await this.call('GET', `/api/v1/namespaces/${this.namespace}/pods/${this.pod(node)}`);
    if (response.status === 404) return false;
    if (response.status !== 200) throw new Error(`reading pod of ${node}: HTTP ${response.status}`);
    const pod = JSON.parse(response.body) as { status?: { phase?: string } };
    return pod.status?.phase === 'Running';
  }

  async markRoles(shards: { primary: string; replicas: string[] }[]): Promise<void> {
    for (const shard of shards) {
      for (const [node, role] of [[shard.primary, 'primary'], ...shard.replicas.map((replica) => [replica, 'replica'])]) {
        const response = await this.call(
          'PATCH',
          `/api/v1/namespaces/${this.namespace}/pods/${this.pod(node)}`,
          JSON.stringify({ metadata: { labels: { [ROLE_LABEL]: role } } }),
        );
        // 404: the pod is being recreated; the next reconcile labels it.
        if (response.status !== 200 && response.status !== 404) throw new Error(`labelling pod of ${node}: HTTP ${response.status}`);
      }
    }
  }

  /** The StatefulSets are the operator's (k8s/): a new shard's pods are named in the request. */
  readonly canProvision = false;

  async provision(): Promise<NodeAddress[]> {
    throw new Error('node control kubernetes cannot provision nodes: name them in the body of POST /api/cluster/shards');
  }

  /**
   * Nothing here: the operator scales the drained shard's StatefulSet to 0
   * (`kubectl scale statefulset pg-s<n> --replicas=0`), which stops its pods and keeps their
   * PersistentVolumeClaims, so the data stays until the operator deletes them. The monitor's
   * service account may not scale StatefulSets, and a pod deleted here would be recreated.
   */
  async retire(): Promise<void> {
    return undefined;
  }

  private async deletePod(node: string, graceSeconds: number): Promise<void> {
    const response = await this.call('DELETE', `/api/v1/namespaces/${this.namespace}/pods/${this.pod(node)}?gracePeriodSeconds=${graceSeconds}`);
    // 404: the pod is already gone, which is what a delete wants.
    if ((response.status < 200 || response.status > 299) && response.status !== 404) {
      throw new Error(`deleting pod of ${node}: HTTP ${response.status}`);
    }
  }

  private pod(node: string): string {
    const pod = this.pods.get(node);
    if (!pod) throw new RangeError(`unknown node ${node}`);
    return pod;
  }

  private call(method: string, path: string, mergePatch?: string): Promise<{ status: number; body: string }> {
    // Read on every call: Kubernetes rotates projected service-account tokens.
    const token = readFileSync(`${this.api.serviceAccountDir}/token`, 'utf8').trim();
    const url = new URL(path, this.api.url);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            accept: 'application/json',
            ...(mergePatch ? { 'content-type': 'application/merge-patch+json' } : {}),
          },
          ca: this.clusterCa,
          timeout: this.api.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${url.pathname}: no answer within ${this.api.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(mergePatch);
    });
  }
}

export function podName(host: string): string {
  return host.split('.')[0];
}
