// The chart's alerting rules, as rendered: promtool checks them and runs the unit tests of
// prometheus-rules.promtool.yaml (every alert firing and quiet, at the chart's defaults); the
// PrometheusRule and the plain rules ConfigMap carry the same groups; every for: is a value.
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import yaml from "js-yaml";
import { run } from "../../src/cmd/local/tools.ts";
import { fullname, render } from "../support/chart.ts";
import { alertsOf, PROMTOOL, type RuleGroup, renderRules, writeRulesFile } from "../support/prometheus.ts";

const ALERTS = [
  "LibvirtOperatorVMUnhealthy",
  "LibvirtOperatorVMPausedIOError",
  "LibvirtOperatorNoNodeCanRunVMs",
  "LibvirtOperatorAgentDown",
  "LibvirtOperatorAgentNotHeartbeating",
  "LibvirtOperatorNoLeader",
  "LibvirtOperatorSnapshotPolicyFailing",
  "LibvirtOperatorPoolNearlyFull",
  "LibvirtOperatorReconcileErrors",
];
const UNIT_TESTS = join(import.meta.dirname, "prometheus-rules.promtool.yaml");

interface PromtoolTests {
  tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }>;
}

let dir = "";
let groups: RuleGroup[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "lvo-rules-"));
  const rendered = await renderRules();
  assert.deepEqual(rendered.fromPrometheusRule, rendered.fromConfigMap);
  groups = rendered.fromConfigMap;
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("Prometheus rules (the chart's, rendered)", () => {
  it("ship exactly the documented alerts, each with a severity, summary and description", () => {
    const alerts = alertsOf(groups);
    assert.deepEqual(alerts.map((a) => a.alert).sort(), [...ALERTS].sort());
    for (const a of alerts) {
      assert.match(a.labels?.severity ?? "", /^(warning|critical)$/, `${a.alert} severity`);
      assert.ok(a.annotations?.summary && a.annotations.description, `${a.alert} annotations`);
      assert.ok(a.for, `${a.alert} has a for:`);
    }
  });

  it("pass promtool check rules and promtool test rules (every alert firing and quiet)", async () => {
    await writeRulesFile(dir, groups);
    const tests = join(dir, "tests.yaml");
    await copyFile(UNIT_TESTS, tests);
    const { stdout } = await run(PROMTOOL, ["test", "rules", tests]);
    assert.match(stdout, /SUCCESS/);
    // Each alert has a case where it fires and one where it does not.
    const cases = (yaml.load(await readFile(UNIT_TESTS, "utf8")) as PromtoolTests).tests.flatMap(
      (t) => t.alert_rule_test ?? [],
    );
    for (const alert of ALERTS) {
      const mine = cases.filter((c) => c.alertname === alert);
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${alert}: a case where it fires`,
      );
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${alert}: a case where it stays quiet`,
      );
    }
  });

  it("a failing unit test fails promtool (the tests can fail)", async () => {
    const broken = (await readFile(UNIT_TESTS, "utf8")).replace(
      "severity: warning, namespace: ns, name: stuck",
      "severity: critical, namespace: ns, name: stuck",
    );
    const path = join(dir, "broken.yaml");
    await writeRulesFile(dir, groups);
    await writeFile(path, broken);
    await assert.rejects(run(PROMTOOL, ["test", "rules", path]), /FAILED/);
  });

  it("every for: is a chart value, and thresholds, jobs, labels and runbooks are too", async () => {
    const rendered = await renderRules(
      ...[
        "vmUnhealthy",
        "vmPausedIOError",
        "noNodeCanRunVMs",
        "agentDown",
        "agentNotHeartbeating",
        "noLeader",
        "snapshotPolicyFailing",
        "poolNearlyFull",
        "reconcileErrors",
      ].map((k) => `metrics.prometheusRule.for.${k}=7s`),
      "metrics.prometheusRule.jobs.agent=my-agents",
      "metrics.prometheusRule.agentHeartbeatAgeSeconds=90",
      "metrics.prometheusRule.poolAvailablePercent=5",
      "metrics.prometheusRule.snapshotPolicyFailures=4",
      "metrics.prometheusRule.alertLabels.team=platform",
      "metrics.prometheusRule.runbookBaseUrl=https://runbooks.example/libvirt-operator/",
    );
    const alerts = alertsOf(rendered.fromConfigMap);
    for (const a of alerts) {
      assert.equal(a.for, "7s", `${a.alert} for:`);
      assert.equal(a.labels?.team, "platform");
      assert.equal(a.annotations?.runbook_url, `https://runbooks.example/libvirt-operator/${a.alert}`);
    }
    const expr = (name: string) => alerts.find((a) => a.alert === name)?.expr ?? "";
    assert.match(expr("LibvirtOperatorAgentDown"), /up\{job="my-agents"\} == 0/);
    assert.match(expr("LibvirtOperatorAgentNotHeartbeating"), /> 90$/);
    assert.match(expr("LibvirtOperatorPoolNearlyFull"), /< 5$/);
    assert.match(expr("LibvirtOperatorSnapshotPolicyFailing"), /consecutive_failures >= 4\n/);
    await writeRulesFile(dir, rendered.fromConfigMap);
    // The schema refuses what Prometheus would not take as a duration.
    await assert.rejects(renderRules("metrics.prometheusRule.for.vmUnhealthy=10 minutes"), /vmUnhealthy/);
    // Defaults: the agent's job is its metrics Service's name; no runbook_url.
    const defaults = alertsOf(groups);
    assert.match(
      defaults.find((a) => a.alert === "LibvirtOperatorAgentDown")?.expr ?? "",
      new RegExp(`up\\{job="${fullname}-agent-metrics"\\}`),
    );
    assert.ok(defaults.every((a) => a.annotations?.runbook_url === undefined));
  });

  it("renders the rules ConfigMap and the dashboard only when asked", async () => {
    const names = (objs: Array<{ kind: string; metadata: { name: string } }>) =>
      objs.filter((o) => o.kind === "ConfigMap").map((o) => o.metadata.name);
    assert.deepEqual(names(await render()), []);
    const objs = await render(
      "metrics.dashboard.enabled=true",
      "metrics.dashboard.namespace=monitoring",
      "metrics.dashboard.annotations.grafana_folder=VMs",
    );
    const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === `${fullname}-dashboard`) as
      | {
          metadata: {
            namespace: string;
            labels: Record<string, string>;
            annotations: Record<string, string>;
          };
          data: Record<string, string>;
        }
      | undefined;
    assert.ok(cm, "dashboard ConfigMap");
    assert.equal(cm.metadata.namespace, "monitoring");
    assert.equal(cm.metadata.labels.grafana_dashboard, "1");
    assert.equal(cm.metadata.annotations.grafana_folder, "VMs");
    const dashboard = JSON.parse(cm.data["libvirt-operator.json"] ?? "");
    assert.equal(dashboard.uid, "libvirt-operator");
    assert.ok(dashboard.panels.length > 10);
  });
});
