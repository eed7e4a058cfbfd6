#!/usr/bin/env python3
"""Checks deploy/monitoring/ beyond what promtool checks: every alerting rule is exercised by
vault-kms-alerts.test.yaml both firing and staying quiet, and the Grafana dashboard is valid JSON
whose panels all query Prometheus through the dashboard's data source variable.

That every metric the rules and the dashboard name is one the plugin exposes is checked against a
live /metrics by tests/integration (MonitoringMatchesTheExposition).

Run by ctest (tests/monitoring/CMakeLists.txt) as: check_monitoring.py --source-dir=DIR
"""
import argparse
import json
import os
import sys
import unittest

import yaml

ARGS = None


def monitoring(*parts):
    return os.path.join(ARGS.source_dir, "deploy", "monitoring", *parts)


def load_yaml(name):
    with open(monitoring(name), encoding="utf-8") as f:
        return yaml.safe_load(f)


class AlertRules(unittest.TestCase):
    def test_every_alert_is_tested_firing_and_quiet(self):
        rules = load_yaml("vault-kms-alerts.yaml")
        alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
        self.assertGreaterEqual(len(alerts), 9)
        self.assertEqual(len(alerts), len(set(alerts)), "alert names are unique")
        tests = load_yaml("vault-kms-alerts.test.yaml")
        self.assertEqual(tests["rule_files"], ["vault-kms-alerts.yaml"])
        firing, quiet = set(), set()
        for t in tests["tests"]:
            for case in t.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
        for a in alerts:
            with self.subTest(alert=a):
                self.assertIn(a, firing, f"{a}: no test expects it to fire")
                self.assertIn(a, quiet, f"{a}: no test expects it to stay quiet")
        self.assertEqual(firing | quiet, set(alerts), "tests name only existing alerts")

    def test_every_alert_has_severity_and_text(self):
        rules = load_yaml("vault-kms-alerts.yaml")
        for g in rules["groups"]:
            for r in g["rules"]:
                with self.subTest(alert=r.get("alert")):
                    self.assertIn(r["labels"]["severity"], {"critical", "warning", "info"})
                    self.assertTrue(r["annotations"]["summary"])
                    self.assertTrue(r["annotations"]["description"])


class Dashboard(unittest.TestCase):
    def setUp(self):
        with open(monitoring("vault-kms-dashboard.json"), encoding="utf-8") as f:
            self.dash = json.load(f)

    def test_panels_query_prometheus_through_the_variable(self):
        names = [v["name"] for v in self.dash["templating"]["list"]]
        self.assertIn("datasource", names)
        panels = [p for p in self.dash["panels"] if p["type"] != "row"]
        self.assertGreater(len(panels), 10)
        ids = [p["id"] for p in self.dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        for p in panels:
            with self.subTest(panel=p["title"]):
                self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"})
                self.assertTrue(p["targets"])
                for t in p["targets"]:
                    self.assertTrue(t["expr"].strip())
                    # Every query is scoped to the chosen job and instances.
                    self.assertIn('job=~"$job"', t["expr"])
                    self.assertIn('instance=~"$instance"', t["expr"])

    def test_panels_do_not_overlap(self):
        cells = set()
        for p in self.dash["panels"]:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, f"{p['title']} overlaps another panel")
                    cells.add((x, y))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
