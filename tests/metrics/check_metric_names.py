#!/usr/bin/env python3
"""Checks that every metric a dashboard or an alert rule queries is one sqs2pg exports.

Usage: check_metric_names.py SCRAPE DASHBOARD_JSON ALERTS_YML
SCRAPE is a real /metrics answer of a running sqs2pg. Each PromQL expression is reduced to its
metric names (label matchers, ranges, strings, grouping labels, functions and keywords removed);
each name must be a sample name in SCRAPE, or `up`, which Prometheus itself adds to every target.
Prints the names checked; exits 1 naming each unknown one and where it is used.
"""
import json
import re
import sys

import yaml

PROMQL_WORDS = {
    # aggregations, functions and keywords that appear in our expressions or could
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "group",
    "count_values", "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
    "histogram_quantile", "abs", "absent", "absent_over_time", "ceil", "floor", "round", "clamp_min",
    "clamp_max", "time", "timestamp", "vector", "scalar", "label_replace", "label_join", "sort", "sort_desc",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "predict_linear", "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}
ALWAYS_THERE = {"up"}  # added by Prometheus to every scrape target


def names_in(expr):
    # Grafana's label_values(metric{...}, label): the second argument is a label name.
    expr = re.sub(r"label_values\(([^,)]*),[^)]*\)", r"\1", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    # grouping labels: by (a, b), without (...), on (...), ignoring (...), group_left (...)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\w+", " ", expr)  # Grafana variables
    out = set()
    for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if token.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"[0-9.e+-]+", token):
            continue
        out.add(token)
    return out


def main():
    scrape_path, dashboard_path, alerts_path = sys.argv[1:4]
    exported = set(ALWAYS_THERE)
    for line in open(scrape_path):
        if line.strip() and not line.startswith("#"):
            exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    uses = []  # (name, where)

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    uses.extend((n, where) for n in names_in(value))
                elif key == "query" and isinstance(value, dict):
                    walk(value, where)
                elif key == "query" and isinstance(value, str) and "label_values" in value:
                    uses.extend((n, where) for n in names_in(value))
                else:
                    walk(value, node.get("title", where) if isinstance(node.get("title"), str) else where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(json.load(open(dashboard_path)), "dashboard")
    for group in yaml.safe_load(open(alerts_path))["groups"]:
        for rule in group["rules"]:
            uses.extend((n, "alert " + rule.get("alert", rule.get("record", "?"))) for n in names_in(rule["expr"]))
    if not uses:
        print("no metric names found: the extraction is broken")
        return 1
    unknown = [(n, w) for n, w in uses if n not in exported]
    print("checked %d uses of %d metric names" % (len(uses), len({n for n, _ in uses})))
    for name, where in sorted(set(unknown)):
        print("not exported by sqs2pg: %s (in %s)" % (name, where))
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main())
