import { readRepoFile } from './files';
import { loadYamlFile } from './files';
import {
  dashboardExpressions,
  declaredMetrics,
  defaultMetrics,
  expressionProblems,
  metricsOfExpression,
  panelsOf,
  seriesNames,
  type Dashboard,
} from './monitoring';

// Generous: CI runs these beside builds and a whole stack on two cores.
jest.setTimeout(60_000);

/** docs/reference.md section 9 names these; the dashboard and the alerts are built on them. */
const CONTRACT_METRICS = [
  'shortener_http_requests_total',
  'shortener_http_request_duration_seconds',
  'shortener_redirects_total',
  'shortener_rate_limited_total',
  'shortener_node_up',
  'shortener_monitor_replica_lag_bytes',
  'shortener_failover_duration_seconds',
  'shortener_topology_epoch',
  'shortener_outbox_pending',
];

describe('monitoring: the Grafana dashboard and the alert rules use metrics that exist', () => {
  const declared = declaredMetrics();
  let known: Set<string>;
  const dashboard = JSON.parse(readRepoFile('deploy', 'grafana', 'shortener.json')) as Dashboard;
  const rules = (
    loadYamlFile('deploy/prometheus/alerts.yaml')[0] as { groups: { rules: { alert: string; expr: string; annotations: Record<string, string> }[] }[] }
  ).groups.flatMap((group) => group.rules);

  beforeAll(async () => {
    known = seriesNames(new Map([...declared, ...(await defaultMetrics())]));
  });

  it('finds the metrics of docs/reference.md section 9 declared in the sources, with their types', () => {
    for (const name of CONTRACT_METRICS) expect({ name, declared: declared.has(name) }).toEqual({ name, declared: true });
    expect(declared.get('shortener_http_request_duration_seconds')).toBe('histogram');
    expect(declared.get('shortener_http_requests_total')).toBe('counter');
    expect(declared.get('shortener_node_up')).toBe('gauge');
  });

  it('every dashboard expression references only metrics that a service exports', () => {
    const expressions = dashboardExpressions(dashboard);
    expect(expressions.length).toBeGreaterThan(20);
    expect(expressions.flatMap((expression) => expressionProblems(expression, known))).toEqual([]);
  });

  it('every alert expression references only metrics that a service exports', () => {
    expect(rules.length).toBeGreaterThanOrEqual(7);
    expect(rules.flatMap((rule) => expressionProblems(rule.expr, known))).toEqual([]);
  });

  it('the dashboard shows every metric of docs/reference.md section 9', () => {
    const used = new Set(dashboardExpressions(dashboard).flatMap(metricsOfExpression));
    for (const name of CONTRACT_METRICS) {
      const shown = [name, `${name}_bucket`, `${name}_count`, `${name}_sum`].some((series) => used.has(series));
      expect({ name, shown }).toEqual({ name, shown: true });
    }
  });

  it('the dashboard is well formed: unique panel ids, a query in every panel but the rows, a datasource variable', () => {
    const panels = panelsOf(dashboard);
    expect(new Set(panels.map((panel) => panel.id)).size).toBe(panels.length);
    for (const panel of panels.filter((candidate) => candidate.type !== 'row')) {
      expect({ title: panel.title, queries: (panel.targets ?? []).length > 0 }).toEqual({ title: panel.title, queries: true });
    }
    expect(JSON.stringify(dashboard)).toContain('${datasource}');
    expect(dashboard.uid).toBe('shortener');
  });

  it('every alert has a summary and a runbook paragraph in docs/runbooks.md', () => {
    const runbooks = readRepoFile('docs', 'runbooks.md');
    const anchors = new Set([...runbooks.matchAll(/^### (\S+)/gm)].map((match) => match[1].toLowerCase()));
    for (const rule of rules) {
      expect({ alert: rule.alert, summary: Boolean(rule.annotations.summary) }).toEqual({ alert: rule.alert, summary: true });
      expect(rule.annotations.runbook_url).toBe(`docs/runbooks.md#${rule.alert.toLowerCase()}`);
      expect({ alert: rule.alert, runbook: anchors.has(rule.alert.toLowerCase()) }).toEqual({ alert: rule.alert, runbook: true });
    }
  });

  it('flags an expression on a metric nobody exports, and one that names no metric', () => {
    expect(expressionProblems('sum(rate(shortener_nonexistent_total[5m]))', known)).toEqual([
      'sum(rate(shortener_nonexistent_total[5m])): shortener_nonexistent_total is not exported by any service',
    ]);
    expect(expressionProblems('vector(1)', known)).toHaveLength(1);
    // A histogram is queried through its series, never by its bare name.
    expect(expressionProblems('shortener_http_request_duration_seconds', known)).toHaveLength(1);
    // A metric name inside a label value is not a use of it.
    expect(metricsOfExpression('up{job="shortener_nothing"} + shortener_node_up')).toEqual(['shortener_node_up']);
  });
});
