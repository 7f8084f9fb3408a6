"""The Grafana dashboard and the README's metrics reference agree with what edgewax exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgewax.config.spec import load_spec_text
from edgewax.flows.compiler import compile_spec
from edgewax.testing import run_compiled

from .conftest import ROOT

DASHBOARD = ROOT / "examples" / "grafana" / "edgewax.json"
_SUFFIXES = ("_bucket", "_sum", "_count")


def documented() -> set[str]:
    """Metric names in the first column of the README's metrics reference table."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Metrics reference") :]
    section = section[: section.index("\n### ", 5)]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([a-z_:][a-z0-9_:]*)`", first))
    return names


def base_name(sample: str) -> str:
    """The family a sample name belongs to (histogram parts, counter `_total` kept)."""
    for suffix in _SUFFIXES:
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (not functions, labels, or keywords)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"\b[a-z_][a-z0-9_:]*\b(?!\s*\()", expr))
    return {w for w in words if w.startswith(("edgewax_", "process_"))}


def test_dashboard_is_valid_json_with_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for wanted in (
        "Events in per node",
        "Events out per node",
        "Bytes saved ratio",
        "Inference latency",
        "Outbox depth",
        "Oldest event in the outbox",
        "Drops by reason",
    ):
        assert wanted in titles


def test_every_dashboard_expression_reads_documented_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = documented()
    used: set[str] = set()
    for expr in exprs(dashboard):
        names = metric_names(expr)
        assert names, expr
        used |= names
        for name in names:
            assert base_name(name) in known, f"{name} (in `{expr}`) is not in the README reference"
        if "histogram_quantile" in expr:
            assert "_bucket" in expr and "le" in expr, expr
    # The essentials are all there.
    for name in (
        "edgewax_egress_bytes_total",
        "edgewax_source_bytes_total",
        "edgewax_inference_seconds_bucket",
        "edgewax_outbox_depth_events",
        "edgewax_outbox_oldest_age_seconds",
        "edgewax_node_discarded_events_total",
    ):
        assert name in used


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """`promtool check rules` parses each expression (Grafana's variables filled in)."""
    promtool = Path("/usr/bin/promtool")
    if not promtool.exists():
        pytest.fail("promtool is not installed (Debian's prometheus package ships it)")
    dashboard = json.loads(DASHBOARD.read_text())
    rules = []
    for i, expr in enumerate(exprs(dashboard)):
        concrete = expr.replace("$__rate_interval", "1m")
        concrete = re.sub(r"\$\w+", ".*", concrete)
        rules.append({"record": f"edgewax:dashboard_{i}", "expr": concrete})
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_family_a_run_exports_is_documented(tmp_path: Path) -> None:
    (tmp_path / "rec.jsonl").write_text('{"ts": 1, "v": 1}\n{bad\n')
    spec = load_spec_text(
        "version: 1\nsettings: {dead_letter: {path: null}}\npipelines:\n  p:\n    nodes:\n"
        "      - {id: rec, type: source.jsonl, path: rec.jsonl}\n"
        "      - {id: gen, type: sensor.synthetic, count: 3, speed: 0}\n"
        "      - {id: hot, type: filter, inputs: [rec, gen], where: 'get(\"v\", 0) > 0'}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n",
        tmp_path,
    )
    compiled = compile_spec(spec)
    run_compiled(compiled)
    known = documented()
    exported = {
        base_name(s.name) for family in compiled.metrics.registry.collect() for s in family.samples
    }
    assert "edgewax_node_last_error_timestamp_seconds" in exported  # the bad line
    assert exported - known == set()


def test_every_metric_named_in_the_code_is_in_the_reference() -> None:
    """Node types add families as they need them; each must be in the README's reference."""
    known = documented()
    named: set[str] = set()
    for path in (ROOT / "edgewax").rglob("*.py"):
        named.update(re.findall(r"\"(edgewax_[a-z0-9_]+)\"", path.read_text()))
    missing = {n for n in named if n not in known and f"{n}_total" not in known}
    assert missing == set()
