// Prometheus as its users run it: the chart's rendered alerting rules, promtool, and a real
// Prometheus (Debian's package) scraping the test stack's controller and agent on loopback.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import yaml from "js-yaml";
import { REPO_ROOT, run } from "../../src/cmd/local/tools.ts";
import { fullname, type K8sObject, render } from "./chart.ts";
import { TEST_STACK } from "./stack.ts";

export const PROMTOOL = "/usr/bin/promtool";
export const PROMETHEUS = "/usr/bin/prometheus";
/** The slot's port after the agent's metrics port (free in every slot's range). */
export const PROMETHEUS_PORT = TEST_STACK.ports.agentMetrics + 1;
/** The scrape jobs the rules watch by default: the metrics Services' names (a ServiceMonitor's job). */
export const JOBS = {
  controller: `${fullname}-controller-metrics`,
  agent: `${fullname}-agent-metrics`,
};

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
export interface RuleGroup {
  name: string;
  rules: Rule[];
}

/** The chart's rule groups, rendered with SET: the ConfigMap's rules file and the PrometheusRule's spec. */
export async function renderRules(
  ...set: string[]
): Promise<{ fromConfigMap: RuleGroup[]; fromPrometheusRule: RuleGroup[]; objects: K8sObject[] }> {
  const objects = await render(
    "metrics.prometheusRule.enabled=true",
    "metrics.prometheusRule.configMap.enabled=true",
    ...set,
  );
  const configMap = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === `${fullname}-rules`);
  const file = (configMap as { data?: Record<string, string> } | undefined)?.data?.[
    "libvirt-operator.rules.yaml"
  ];
  assert.ok(file, "the rules ConfigMap holds libvirt-operator.rules.yaml");
  const prometheusRule = objects.find((o) => o.kind === "PrometheusRule");
  assert.ok(prometheusRule?.spec, "a PrometheusRule rendered");
  return {
    fromConfigMap: (yaml.load(file) as { groups: RuleGroup[] }).groups,
    fromPrometheusRule: prometheusRule.spec.groups as RuleGroup[],
    objects,
  };
}

export function alertsOf(groups: RuleGroup[]): Rule[] {
  return groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
}

/** Writes GROUPS as a Prometheus rules file in DIR and checks it with promtool; returns its path. */
export async function writeRulesFile(dir: string, groups: RuleGroup[]): Promise<string> {
  const path = join(dir, "libvirt-operator.rules.yaml");
  await writeFile(path, yaml.dump({ groups }, { lineWidth: -1 }));
  await run(PROMTOOL, ["check", "rules", path]);
  return path;
}

export interface PrometheusServer {
  url: string;
  /** Instant query; the result vector (or matrix) of the query. */
  query(promql: string): Promise<Array<{ metric: Record<string, string>; value?: [number, string] }>>;
  targets(): Promise<Array<{ labels: Record<string, string>; health: string; lastError: string }>>;
  alerts(): Promise<Array<{ labels: Record<string, string>; state: string }>>;
  /** Every loaded rule: its name, whether its last evaluation worked, and the error when not. */
  rules(): Promise<Array<{ name: string; health: string; lastError?: string }>>;
  stop(): Promise<void>;
}

async function api<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== "success") throw new Error(`${url}: ${body.error ?? res.status}`);
  return body.data;
}

/**
 * Starts Prometheus on 127.0.0.1:PROMETHEUS_PORT with RULES, scraping the test stack's controller
 * and agent (jobs named as JOBS) every second and evaluating rules every second.
 */
export async function startPrometheus(rulesFile: string): Promise<PrometheusServer> {
  const dir = await mkdtemp(join(tmpdir(), "lvo-prometheus-"));
  const config = {
    global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
    rule_files: [rulesFile],
    scrape_configs: [
      // As the chart's ServiceMonitors scrape: the target carries the operator's namespace and
      // our own namespace label (the VM's) wins.
      ...(
        [
          [JOBS.controller, TEST_STACK.ports.controllerMetrics],
          [JOBS.agent, TEST_STACK.ports.agentMetrics],
        ] as const
      ).map(([job, port]) => ({
        job_name: job,
        honor_labels: true,
        static_configs: [
          { targets: [`127.0.0.1:${port}`], labels: { namespace: "libvirt-operator-system" } },
        ],
      })),
    ],
  };
  const configFile = join(dir, "prometheus.yml");
  await writeFile(configFile, yaml.dump(config));
  await run(PROMTOOL, ["check", "config", configFile]);
  const log = join(dir, "prometheus.log");
  const child: ChildProcess = spawn(
    PROMETHEUS,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${PROMETHEUS_PORT}`,
      "--web.enable-lifecycle",
    ],
    { stdio: ["ignore", openSync(log, "a"), openSync(log, "a")] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${PROMETHEUS_PORT}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`prometheus did not start: ${(await readFile(log, "utf8")).slice(-2000)}`);
    await sleep(100);
  }
  return {
    url,
    async query(promql) {
      const data = await api<{ result: Array<{ metric: Record<string, string>; value?: [number, string] }> }>(
        `${url}/api/v1/query?query=${encodeURIComponent(promql)}`,
      );
      return data.result;
    },
    async targets() {
      return (
        await api<{
          activeTargets: Array<{ labels: Record<string, string>; health: string; lastError: string }>;
        }>(`${url}/api/v1/targets?state=active`)
      ).activeTargets;
    },
    async alerts() {
      return (
        await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>(
          `${url}/api/v1/alerts`,
        )
      ).alerts;
    },
    async rules() {
      const data = await api<{
        groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }>;
      }>(`${url}/api/v1/rules`);
      return data.groups.flatMap((g) => g.rules);
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await Promise.race([exited, sleep(10_000)]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Polls CHECK every half second until it returns a value; the error names WHAT and the last seen. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const got = await check();
      if (got !== undefined) return got;
    } catch (err) {
      last = err;
    }
    await sleep(500);
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000}s${last ? ` (last error: ${last})` : ""}`);
}

/** The dashboard in the chart, as Grafana loads it. */
export async function dashboard(): Promise<{ panels: Array<DashboardPanel> }> {
  return JSON.parse(
    await readFile(
      join(REPO_ROOT, "helm", "libvirt-operator", "dashboards", "libvirt-operator.json"),
      "utf8",
    ),
  );
}
export interface DashboardPanel {
  type: string;
  title: string;
  targets?: Array<{ expr: string; refId: string }>;
}
