import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { repoPath } from './files';

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary';

function sourceFiles(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== 'node_modules') found.push(...sourceFiles(path));
    } else if (name.endsWith('.ts') && !name.endsWith('.spec.ts') && !name.includes('e2e-spec') && !name.includes('faults-spec')) found.push(path);
  }
  return found;
}

/**
 * The shortener_* metrics the services declare, with their types, read from the sources of
 * apps/ and libs/: `counter('name', ...)`, `gauge(...)`, `histogram(...)` (the idempotent
 * constructors of libs/observability), `new Counter({ name: '...' })`, and a constant
 * holding the name that one of those is called with.
 */
export function declaredMetrics(sources = [...sourceFiles(repoPath('apps')), ...sourceFiles(repoPath('libs'))]): Map<string, MetricType> {
  const metrics = new Map<string, MetricType>();
  for (const file of sources) {
    const text = readFileSync(file, 'utf8');
    const constants = new Map<string, string>();
    for (const match of text.matchAll(/const (\w+) = '([a-z_:][a-z0-9_:]*)'/g)) constants.set(match[1], match[2]);
    for (const match of text.matchAll(/\b(counter|gauge|histogram)\(\s*(?:'([a-z_:][a-z0-9_:]*)'|(\w+))\s*,/g)) {
      const name = match[2] ?? constants.get(match[3]);
      if (name) metrics.set(name, match[1] as MetricType);
    }
    for (const match of text.matchAll(/new (Counter|Gauge|Histogram|Summary)\(\{\s*name:\s*'([a-z_:][a-z0-9_:]*)'/g)) {
      metrics.set(match[2], match[1].toLowerCase() as MetricType);
    }
  }
  return metrics;
}

/** The Node.js default metrics every service keeps (prom-client's collectDefaultMetrics). */
export async function defaultMetrics(): Promise<Map<string, MetricType>> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = new Map<string, MetricType>();
  for (const metric of await registry.getMetricsAsJSON()) metrics.set(metric.name, String(metric.type) as MetricType);
  return metrics;
}

/** Every series name a query may use: counters and gauges as they are, histograms with _bucket, _sum and _count. */
export function seriesNames(metrics: Map<string, MetricType>): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of metrics) {
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(name + suffix);
    else names.add(name);
  }
  return names;
}

const METRIC_PREFIXES = /\b((?:shortener|process|nodejs)_[a-zA-Z0-9_:]*)/g;

/** The metric names an expression refers to (those of the shortener and of the Node.js defaults). */
export function metricsOfExpression(expression: string): string[] {
  // Label values and strings may hold anything: look at the expression without them.
  const bare = expression.replace(/"(?:\\.|[^"\\])*"/g, '""');
  return [...new Set([...bare.matchAll(METRIC_PREFIXES)].map((match) => match[1]))];
}

/** Problems of an expression: it names no metric, or one that no service exports. */
export function expressionProblems(expression: string, known: Set<string>): string[] {
  const used = metricsOfExpression(expression);
  if (used.length === 0) return [`${expression}: names no metric of the shortener`];
  return used.filter((name) => !known.has(name)).map((name) => `${expression}: ${name} is not exported by any service`);
}

interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  targets?: { expr: string; refId: string }[];
  panels?: DashboardPanel[];
}

export interface Dashboard {
  title: string;
  uid: string;
  panels: DashboardPanel[];
  annotations?: { list: { expr?: string }[] };
}

export function panelsOf(dashboard: Dashboard): DashboardPanel[] {
  return dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

/** Every PromQL expression of a dashboard (panel targets and annotations). */
export function dashboardExpressions(dashboard: Dashboard): string[] {
  const fromPanels = panelsOf(dashboard).flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
  const fromAnnotations = (dashboard.annotations?.list ?? []).flatMap((annotation) => (annotation.expr ? [annotation.expr] : []));
  return [...fromPanels, ...fromAnnotations];
}
