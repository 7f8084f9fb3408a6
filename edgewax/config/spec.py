"""A loaded `pipelines.yaml` → a validated `Spec`, or a ConfigError naming every mistake at once.

Each node's own options are checked by its type's pydantic model; this module adds what a single
node cannot see: ids, wiring (`inputs`), cycles, sinks, and the fields each node can rely on.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from edgewax.config.diagnostics import ConfigError, Diagnostic, Mark, did_you_mean, one_of
from edgewax.config.loader import YList, YMap, load_yaml_text, read_text
from edgewax.config.types import ByteSize, Duration
from edgewax.operators.base import Fields, Node
from edgewax.operators.registry import node_types, plugin_failure

ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
ID_HINT = "use letters, digits, `_` and `-`, starting with a letter or `_`"
VERSION = 1
TOP_KEYS = ("version", "settings", "pipelines", "tests")
PIPELINE_KEYS = ("nodes", "description")
NODE_KEYS = ("id", "type", "inputs")


class DeadLetterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(
        "dead_letters.jsonl",
        description="File (relative to `state_dir`) where events a node could not handle are "
        "kept as JSON lines; null keeps only the counters and logs.",
    )
    max_bytes: ByteSize = Field(
        10_000_000, description="Size at which the file rotates once to `PATH.1`."
    )


class MetricsAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1, description="User name Prometheus sends.")
    password: SecretStr = Field(
        min_length=1,
        description="Password; give it as `${ENV_VAR}`, never in the file. Never logged.",
    )


class MetricsTLS(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cert: str = Field(description="PEM certificate (chain), relative to the config file's folder.")
    key: str = Field(description="PEM private key, relative to the config file's folder.")


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Serve the endpoint while `edgewax run` runs.")
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to listen on; `0.0.0.0` (all interfaces) only when you mean it.",
    )
    port: int = Field(9464, ge=1, le=65535, description="TCP port.")
    path: str = Field(
        "/metrics", pattern=r"^/[^?#\s]*$", description="Path of the Prometheus exposition."
    )
    auth: MetricsAuth | None = Field(
        None, description="HTTP basic auth for `/metrics` and `/readyz` (`/healthz` stays open)."
    )
    tls: MetricsTLS | None = Field(None, description="Serve HTTPS with this certificate and key.")

    @field_validator("path")
    @classmethod
    def _not_a_probe(cls, path: str) -> str:
        if path in ("/healthz", "/readyz"):
            raise ValueError(f"{path} is the endpoint's own; pick another path, e.g. /metrics")
        return path


class RecoverySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False,
        description="Keep Bytewax recovery snapshots in `state_dir/recovery`: a restart (after a "
        "crash, SIGKILL or SIGTERM) resumes windows, keyed state, source positions and file sinks "
        "from the last snapshot. Delete that folder to start over.",
    )
    snapshot_interval: Duration = Field(
        10.0,
        gt=0,
        description="How often state is snapshotted (e.g. 5s); at most this much work is redone "
        "after a crash.",
    )


class Settings(BaseModel):
    """Settings for the whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: str = Field(
        ".edgewax",
        description="Folder for run state (dead letters; later outboxes and recovery), relative "
        "to the config file's folder.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log level written to standard error."
    )
    dead_letter: DeadLetterSettings = Field(
        default_factory=DeadLetterSettings, description="Where dead letters go."
    )
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings,
        description="The HTTP endpoint of a run: Prometheus `/metrics`, `/healthz`, `/readyz` "
        "(`{enabled, host, port, path, auth: {username, password}, tls: {cert, key}}`); "
        "default 127.0.0.1:9464.",
    )
    recovery: RecoverySettings = Field(
        default_factory=RecoverySettings,
        description="State that survives restarts (`{enabled, snapshot_interval}`); default off.",
    )
    redistribute: Literal["never", "auto", "always"] = Field(
        "never",
        description="Spread a source's batches over every worker when it has fewer partitions "
        "(one camera, one file) than workers run. `auto`: when the pipeline runs inference "
        "(`tflite`) and has no window or keyed node (spreading reorders a key's events); "
        "`always`; `never` (default: on a 2-core box it bought nothing measurable, see "
        "`benchmarks/scale.py`).",
    )
    shutdown_timeout: Duration = Field(
        30.0,
        gt=0,
        description="After SIGTERM/SIGINT, the longest the run may take to drain, flush sinks "
        "and the outbox before it exits anyway (exit code 1); set systemd's TimeoutStopSec "
        "above it.",
    )


@dataclass
class NodeSpec:
    """One validated node."""

    id: str
    type_name: str
    cls: type[Node]
    options: Any
    inputs: list[str]
    mark: Mark
    consumers: list[str] = field(default_factory=list)
    fields: Fields = None


@dataclass
class PipelineSpec:
    name: str
    nodes: list[NodeSpec]
    """In topological order: every node after its inputs."""
    mark: Mark
    description: str = ""

    def node(self, node_id: str) -> NodeSpec:
        return next(n for n in self.nodes if n.id == node_id)


@dataclass
class Spec:
    file: str
    base_dir: Path
    settings: Settings
    pipelines: dict[str, PipelineSpec]
    sha256: str
    tests: list[Any] = field(default_factory=list)
    """Test cases from the `tests:` key (`edgewax.config.cases.Case`), for `edgewax test`."""
    state_subdir: str = ""
    """Set per process in a multi-process run (`proc-<I>`), so processes never share a file."""

    @property
    def state_dir(self) -> Path:
        p = Path(self.settings.state_dir).expanduser()
        p = p if p.is_absolute() else self.base_dir / p
        return p / self.state_subdir if self.state_subdir else p


def load_spec(path: Path, env: Mapping[str, str] | None = None, display: str | None = None) -> Spec:
    """Read, interpolate and validate a config file; raise ConfigError with every problem."""
    file = display or str(path)
    text = read_text(path, file)
    data = load_yaml_text(text, file, os.environ if env is None else env)
    return validate(data, file, path.resolve().parent, hashlib.sha256(text.encode()).hexdigest())


def load_spec_text(
    text: str, base_dir: Path, env: Mapping[str, str] | None = None, file: str = "<config>"
) -> Spec:
    """Validate a config given as text (tests, `edgewax.testing`)."""
    data = load_yaml_text(text, file, {} if env is None else env)
    return validate(data, file, base_dir, hashlib.sha256(text.encode()).hexdigest())


class _Report:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Diagnostic] = []

    def add(
        self,
        mark: Mark,
        message: str,
        hint: str | None = None,
        pipeline: str | None = None,
        node: str | None = None,
    ) -> None:
        self.items.append(Diagnostic(self.file, mark, message, hint, pipeline, node))


def validate(data: Any, file: str, base_dir: Path, sha256: str) -> Spec:
    """Validate a loaded document; raise ConfigError listing all problems."""
    report = _Report(file)
    top_mark = getattr(data, "mark", Mark(1, 1))
    if not isinstance(data, YMap):
        report.add(top_mark, "the file must be a mapping with `version`, `settings`, `pipelines`")
        raise ConfigError(report.items)
    meant = _unknown_keys(report, data, TOP_KEYS, "top-level keys")

    if "version" not in data and "version" not in meant:
        report.add(data.mark, "missing `version: 1`", "add `version: 1` at the top")
    elif data["version"] != VERSION or isinstance(data["version"], bool):
        report.add(
            data.value_marks["version"],
            f"unsupported version `{data['version']}`",
            f"this edgewax reads version {VERSION}",
        )

    settings = Settings()
    raw_settings = data.get("settings")
    if raw_settings is not None:
        if not isinstance(raw_settings, YMap):
            report.add(data.value_marks["settings"], "`settings` must be a mapping")
        else:
            try:
                settings = Settings.model_validate(dict(raw_settings))
            except ValidationError as e:
                _report_pydantic(report, e, raw_settings, Settings, "setting", prefix="settings.")
            else:
                _check_metrics_files(report, settings, raw_settings, base_dir)

    pipelines: dict[str, PipelineSpec] = {}
    raw_pipes = data.get("pipelines")
    if "pipelines" not in data:
        if "pipelines" not in meant:
            report.add(
                data.mark, "missing `pipelines`", "add `pipelines:` with at least one pipeline"
            )
    elif not isinstance(raw_pipes, YMap) or not raw_pipes:
        report.add(
            data.value_marks["pipelines"],
            "`pipelines` must map pipeline names to pipelines, and have at least one",
            "e.g. `pipelines: {demo: {nodes: [...]}}`",
        )
    else:
        for name, raw in raw_pipes.items():
            spec = _pipeline(report, name, raw, raw_pipes, base_dir)
            if spec is not None:
                pipelines[str(name)] = spec

    tests: list[Any] = []
    if "tests" in data:
        tests = check_cases(report, data, pipelines, complete=not report.items)
    if report.items:
        raise ConfigError(report.items)
    return Spec(file, base_dir, settings, pipelines, sha256, tests)


def check_cases(
    report: _Report, container: YMap, pipelines: dict[str, PipelineSpec], complete: bool = True
) -> list[Any]:
    """Validate `container["tests"]` (test cases) against the pipelines; return the cases.

    Names of pipelines and nodes are checked only when the pipelines are `complete` (valid).
    """
    from edgewax.config.cases import Case

    class _Tests(BaseModel):
        tests: list[Case] = Field(min_length=1)

    try:
        cases = _Tests.model_validate({"tests": container["tests"]}).tests
    except ValidationError as e:
        _report_pydantic(report, e, container, _Tests, "key")
        return []
    if not complete:
        return cases
    raw_list = container["tests"]
    for i, case in enumerate(cases):
        raw = raw_list[i]
        if case.pipeline is None and len(pipelines) != 1:
            report.add(
                raw.mark,
                f"test `{case.name}` does not say which pipeline it tests",
                f"add `pipeline:`, one of: {', '.join(pipelines)}",
            )
            continue
        pname = case.pipeline or next(iter(pipelines))
        if pname not in pipelines:
            report.add(
                raw.value_marks["pipeline"],
                f"test `{case.name}`: no pipeline `{pname}`",
                one_of(pname, pipelines, "pipelines"),
            )
            continue
        p = pipelines[pname]
        ids = {n.id: n for n in p.nodes}
        for part in ("inputs", "stub", "expect"):
            items = getattr(case, part)
            raw_items = raw.get(part)
            for j, item in enumerate(items):
                ref, output = split_ref(item.node)
                where = (
                    _locate(raw, (part, j, "node"))
                    if isinstance(raw_items, YList)
                    else (_locate(raw, (part, "node")))
                )
                if ref not in ids:
                    report.add(
                        where,
                        f"test `{case.name}`: `{item.node}` is not a node of this pipeline",
                        one_of(ref, ids, "ids"),
                        pname,
                    )
                elif output is not None and (
                    part != "expect" or output not in ids[ref].cls.outputs
                ):
                    report.add(
                        where,
                        f"test `{case.name}`: node `{ref}` has no output `{output}`",
                        f"read it as `{ref}`",
                        pname,
                    )
                elif part == "stub" and ids[ref].cls.kind != "transform":
                    report.add(
                        where,
                        f"test `{case.name}`: only a transform can be stubbed; "
                        f"`{ref}` is a {ids[ref].cls.kind}",
                        "inject events at it instead, with `inputs:`",
                        pname,
                    )
                elif part == "inputs" and ids[ref].cls.kind == "sink":
                    report.add(
                        where,
                        f"test `{case.name}`: events cannot be injected at sink `{ref}`",
                        "inject at a node before it and expect at the sink",
                        pname,
                    )
    return cases


def _check_metrics_files(report: _Report, settings: Settings, raw: YMap, base_dir: Path) -> None:
    """The endpoint's TLS files must exist now, not fail the run after it started."""
    tls = settings.metrics.tls
    if tls is None:
        return
    for name in ("cert", "key"):
        value = getattr(tls, name)
        path = Path(value).expanduser()
        if not (path if path.is_absolute() else base_dir / path).is_file():
            report.add(
                _locate(raw, ("metrics", "tls", name)),
                f"setting `settings.metrics.tls.{name}`: no file at `{value}`",
                "paths are relative to the config file's folder",
            )


def _unknown_keys(
    report: _Report,
    data: YMap,
    allowed: tuple[str, ...],
    what: str,
    pipeline: str | None = None,
    node: str | None = None,
) -> set[str]:
    """Report keys not in `allowed`; return the allowed keys they were likely meant to be."""
    meant: set[str] = set()
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            meant.update(close)
            report.add(
                data.key_marks[key],
                f"unknown key `{key}`",
                one_of(str(key), allowed, what),
                pipeline,
                node,
            )
    return meant


def _pipeline(
    report: _Report, name: Any, raw: Any, parent: YMap, base_dir: Path
) -> PipelineSpec | None:
    pname = str(name)
    mark = parent.key_marks[name]
    ok = True
    if not isinstance(name, str) or not ID_RE.match(name):
        report.add(mark, f"pipeline name `{pname}` is not a valid name", ID_HINT)
        ok = False
    if not isinstance(raw, YMap):
        report.add(
            parent.value_marks[name],
            "a pipeline must be a mapping with `nodes`",
            "e.g. `demo: {nodes: [...]}`",
            pname,
        )
        return None
    meant = _unknown_keys(report, raw, PIPELINE_KEYS, "pipeline keys", pname)
    nodes_raw = raw.get("nodes")
    if "nodes" not in raw and "nodes" in meant:
        return None
    if not isinstance(nodes_raw, YList) or not nodes_raw:
        where = raw.value_marks.get("nodes", raw.mark)
        report.add(
            where,
            "a pipeline needs `nodes:`, a list with at least a source and a sink",
            "e.g. `nodes: [{id: src, type: sensor.synthetic}, {id: out, type: sink.stdout}]`",
            pname,
        )
        return None

    nodes: dict[str, NodeSpec] = {}
    input_marks: dict[str, list[Mark]] = {}
    raw_by_id: dict[str, YMap] = {}
    types = node_types()
    errors_before = len(report.items)
    seen_ids: dict[str, Mark] = {}
    broken: list[Any] = []
    # The last entry, valid or not, that can feed a default input (anything but a sink); a
    # broken one stands as a name with unknown fields, so its readers are checked no further.
    feeder: str | None = None
    for i, raw_node in enumerate(nodes_raw):
        spec = _node(report, pname, i, raw_node, nodes_raw.item_marks[i], seen_ids, types)
        default_input = feeder
        type_cls = types.get(str(raw_node.get("type"))) if isinstance(raw_node, YMap) else None
        if type_cls is None or type_cls.kind != "sink":
            raw_id = raw_node.get("id") if isinstance(raw_node, YMap) else None
            usable = isinstance(raw_id, str) and ID_RE.match(raw_id)
            feeder = spec.id if spec is not None else (str(raw_id) if usable else f"#{i + 1}")
            seen_ids.setdefault(feeder, nodes_raw.item_marks[i])
        if spec is None:
            broken.append(raw_node)
            continue
        nodes[spec.id] = spec
        raw_by_id[spec.id] = raw_node
        raw_inputs = raw_node.get("inputs")
        input_marks[spec.id] = (
            list(raw_inputs.item_marks)
            if isinstance(raw_inputs, YList)
            else [raw_node.value_marks.get("inputs", spec.mark)] * len(spec.inputs)
        )
        if "inputs" not in raw_node and spec.cls.kind != "source":
            if default_input is not None:
                spec.inputs = [default_input]
                input_marks[spec.id] = [spec.mark]
            else:
                report.add(
                    spec.mark,
                    "has no input",
                    "add `inputs: [...]` or put a source before it",
                    pname,
                    spec.id,
                )
        elif "inputs" in raw_node and spec.cls.kind == "source":
            report.add(
                raw_node.key_marks["inputs"],
                "a source takes no `inputs`",
                "remove `inputs`",
                pname,
                spec.id,
            )
            spec.inputs = []
        elif spec.cls.kind != "source" and not spec.inputs:
            report.add(
                raw_node.value_marks["inputs"],
                "`inputs` is empty",
                "list the ids of the nodes it reads from",
                pname,
                spec.id,
            )
    # With broken nodes, check what does not depend on them (input names, the fields of intact
    # branches) and leave the whole-graph checks (sinks, dead ends) for when they are fixed.
    complete = len(nodes) == len(nodes_raw) and len(report.items) == errors_before
    if complete and not any(n.cls.kind == "sink" for n in nodes.values()):
        report.add(
            raw.key_marks.get("nodes", raw.mark),
            "the pipeline has no sink",
            "add one, e.g. `{id: out, type: sink.stdout}`",
            pname,
        )
        return None
    ok = _wiring(report, pname, nodes, set(seen_ids), input_marks, complete) and ok
    for raw_node in broken:
        _check_input_names(report, pname, raw_node, set(seen_ids))
    topo = _topological(report, pname, nodes) if ok else None
    if topo is None:
        return None
    _fields(report, pname, topo, nodes, raw_by_id, base_dir)
    if not complete or len(report.items) != errors_before:
        return None
    from edgewax.config import privacy

    for leak in privacy.leaks(topo):
        message, hint = privacy.describe(leak)
        report.add(leak.sink.mark, message, hint, pname, leak.sink.id)
    if len(report.items) != errors_before:
        return None
    description = raw.get("description", "")
    return PipelineSpec(pname, topo, mark, str(description or ""))


def _node(
    report: _Report,
    pname: str,
    index: int,
    raw: Any,
    mark: Mark,
    seen: dict[str, Mark],
    types: dict[str, type[Node]],
) -> NodeSpec | None:
    label = f"#{index + 1}"
    if not isinstance(raw, YMap):
        report.add(
            mark,
            f"node {label} must be a mapping with `id` and `type`",
            'e.g. `- {id: hot, type: filter, where: "t > 70"}`',
            pname,
        )
        return None
    nid = raw.get("id")
    ok = True
    if "id" not in raw:
        report.add(raw.mark, f"node {label} has no `id`", "add a unique `id:`", pname)
        ok = False
    elif not isinstance(nid, str) or not ID_RE.match(nid):
        report.add(
            raw.value_marks["id"],
            f"`{nid}` is not a valid node id",
            ID_HINT + "; `.` is reserved",
            pname,
        )
        ok = False
    elif nid in seen:
        first = seen[nid]
        report.add(
            raw.value_marks["id"],
            f"duplicate node id `{nid}`",
            f"first used at line {first.line}; ids must be unique in a pipeline",
            pname,
        )
        ok = False
    else:
        seen[nid] = raw.mark
    node = nid if isinstance(nid, str) and ok else (str(nid) if nid is not None else label)

    type_name = raw.get("type")
    cls = None
    if "type" not in raw:
        report.add(raw.mark, "has no `type`", "see `edgewax nodes` for the types", pname, node)
    elif not isinstance(type_name, str) or type_name not in types:
        failure = plugin_failure(str(type_name))
        hint = (
            f"its plug-in failed to load: {failure}"
            if failure
            else one_of(str(type_name), types, "types (see `edgewax nodes`)")
        )
        report.add(raw.value_marks["type"], f"unknown node type `{type_name}`", hint, pname, node)
    else:
        cls = types[type_name]

    inputs: list[str] = []
    if "inputs" in raw:
        value = raw["inputs"]
        if isinstance(value, str):
            inputs = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            inputs = list(value)
        else:
            report.add(
                raw.value_marks["inputs"],
                "`inputs` must be a list of node ids",
                "e.g. `inputs: [score]`",
                pname,
                node,
            )
            ok = False

    options = None
    if cls is not None:
        opts = {k: v for k, v in raw.items() if k not in NODE_KEYS}
        try:
            options = cls.Options.model_validate(opts)
        except ValidationError as e:
            _report_pydantic(report, e, raw, cls.Options, "option", pname, node)
            ok = False
    if not ok or cls is None:
        return None
    return NodeSpec(node, str(type_name), cls, options, inputs, raw.mark)


def split_ref(ref: str) -> tuple[str, str | None]:
    """An input reference: `node` (its main output) or `node.output` (e.g. `win.late`)."""
    node, dot, output = ref.partition(".")
    return node, (output if dot else None)


def _named(ids: set[str]) -> list[str]:
    """Ids to suggest: not the `#N` stand-ins for entries that have no usable id."""
    return [i for i in ids if not i.startswith("#")]


def _check_input_names(report: _Report, pname: str, raw: Any, all_ids: set[str]) -> None:
    """Unknown `inputs` of a node whose options failed: reported now, not after the next fix."""
    if not isinstance(raw, YMap) or not isinstance(raw.get("inputs"), YList):
        return
    node = str(raw.get("id"))
    for inp, mark in zip(raw["inputs"], raw["inputs"].item_marks):
        if isinstance(inp, str) and split_ref(inp)[0] not in all_ids:
            report.add(
                mark,
                f"input `{inp}` is not a node of this pipeline",
                one_of(inp, _named(all_ids), "ids"),
                pname,
                node,
            )


def _wiring(
    report: _Report,
    pname: str,
    nodes: dict[str, NodeSpec],
    all_ids: set[str],
    input_marks: dict[str, list[Mark]],
    complete: bool,
) -> bool:
    """Check `inputs` and link consumers; `all_ids` includes nodes that failed validation."""
    ok = True
    for spec in nodes.values():
        for ref, mark in zip(spec.inputs, input_marks[spec.id]):
            inp, output = split_ref(ref)
            if inp not in nodes and inp in all_ids:
                continue  # its own errors are reported; the link itself is fine
            outputs = nodes[inp].cls.outputs if inp in nodes else ()
            if output is not None and inp in nodes and output not in outputs:
                hint = (
                    one_of(output, outputs, "outputs")
                    if outputs
                    else f"`{inp}` has one output: read it as `{inp}`"
                )
                report.add(mark, f"node `{inp}` has no output `{output}`", hint, pname, spec.id)
                ok = False
                continue
            if inp == spec.id:
                report.add(
                    mark, "reads its own output", "a node cannot be its own input", pname, spec.id
                )
                ok = False
            elif inp not in nodes:
                hint = one_of(inp, _named(all_ids), "ids")
                report.add(
                    mark, f"input `{inp}` is not a node of this pipeline", hint, pname, spec.id
                )
                ok = False
            elif nodes[inp].cls.kind == "sink":
                report.add(
                    mark,
                    f"input `{inp}` is a sink and has no output",
                    "read from the node before it",
                    pname,
                    spec.id,
                )
                ok = False
            else:
                nodes[inp].consumers.append(spec.id)
    if not ok or not complete:
        return ok
    for spec in nodes.values():
        # Reading only a named output (`win.late`) leaves the main output going nowhere.
        main_readers = [c for c in spec.consumers if spec.id in nodes[c].inputs]
        if spec.cls.kind != "sink" and not main_readers:
            report.add(
                spec.mark,
                "its output goes nowhere",
                "add a sink after it (or list it in a node's `inputs`), or remove it",
                pname,
                spec.id,
            )
            ok = False
    return ok


def _topological(report: _Report, pname: str, nodes: dict[str, NodeSpec]) -> list[NodeSpec] | None:
    indegree = {
        nid: len({b for b in (split_ref(i)[0] for i in n.inputs) if b in nodes})
        for nid, n in nodes.items()
    }
    ready = [nid for nid in nodes if indegree[nid] == 0]
    order: list[NodeSpec] = []
    while ready:
        nid = ready.pop(0)
        order.append(nodes[nid])
        for consumer in dict.fromkeys(nodes[nid].consumers):
            indegree[consumer] -= 1
            if indegree[consumer] == 0:
                ready.append(consumer)
    if len(order) == len(nodes):
        return order
    stuck = [nid for nid in nodes if indegree[nid] > 0]
    cycle = _find_cycle(nodes, stuck)
    first = nodes[cycle[0]]
    report.add(
        first.mark,
        f"the inputs form a cycle: {' -> '.join([*cycle, cycle[0]])}",
        "a pipeline must flow one way; break the cycle",
        pname,
        first.id,
    )
    return None


def _find_cycle(nodes: dict[str, NodeSpec], stuck: list[str]) -> list[str]:
    stuck_set = set(stuck)
    path: list[str] = []
    nid = stuck[0]
    while nid not in path:
        path.append(nid)
        nid = next(b for b in (split_ref(i)[0] for i in nodes[nid].inputs) if b in stuck_set)
    cycle = path[path.index(nid) :]
    cycle.reverse()  # report in flow direction
    start = min(range(len(cycle)), key=lambda i: stuck.index(cycle[i]))
    return cycle[start:] + cycle[:start]


def _fields(
    report: _Report,
    pname: str,
    topo: list[NodeSpec],
    nodes: dict[str, NodeSpec],
    raw_by_id: dict[str, YMap],
    base_dir: Path,
) -> None:
    fields_in_of: dict[str, Fields] = {}

    def output_fields(ref: str) -> Fields:
        node_id, output = split_ref(ref)
        node = nodes.get(node_id)
        if node is None:
            return None
        if output is None:
            return node.fields
        return node.cls.output_fields(output, node.options, fields_in_of.get(node_id))

    for spec in topo:
        raw = raw_by_id[spec.id]
        fields_in = _merge_fields([output_fields(i) for i in spec.inputs])
        fields_in_of[spec.id] = fields_in
        for problem in spec.cls.check(spec.options, fields_in, base_dir):
            mark = _locate(raw, problem.loc)
            report.add(mark, problem.message, problem.hint, pname, spec.id)
        spec.fields = spec.cls.fields_out(spec.options, fields_in, base_dir)


def _merge_fields(inputs: list[Fields]) -> Fields:
    """Fields known after a fan-in: unknown if any input is unknown, else the union."""
    if not inputs:
        return None
    merged: dict[str, Any] = {}
    for f in inputs:
        if f is None:
            return None
        merged.update(f)
    return merged


def _locate(container: Any, loc: tuple[Any, ...], key: bool = False) -> Mark:
    """The position of the value at `loc` inside a YMap/YList, or of its nearest ancestor."""
    mark: Mark = getattr(container, "mark", Mark(1, 1))
    cur = container
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(cur, YMap) and part in cur:
            mark = cur.key_marks[part] if key and last else cur.value_marks[part]
            cur = cur[part]
        elif isinstance(cur, YList) and isinstance(part, int) and 0 <= part < len(cur):
            mark = cur.item_marks[part]
            cur = cur[part]
        elif isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue  # pydantic's union / validator labels: not a place in the file
        else:
            break
    return mark


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and "[" in part:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _report_pydantic(
    report: _Report,
    exc: ValidationError,
    raw: YMap,
    model: type[BaseModel],
    what: str,
    pipeline: str | None = None,
    node: str | None = None,
    prefix: str = "",
) -> None:
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        name = prefix + _dotted(loc)
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            choices = list(parent.model_fields) if parent else []
            if not loc[:-1] and what == "option":
                choices += ["inputs"]
            hint = one_of(str(loc[-1]), choices, f"{what}s") if choices else None
            report.add(
                _locate(raw, loc, key=True), f"unknown {what} `{name}`", hint, pipeline, node
            )
        elif kind == "missing":
            parent = _model_at(model, loc[:-1])
            info = parent.model_fields.get(str(loc[-1])) if parent else None
            hint = _first_sentence(info.description) if info and info.description else None
            report.add(
                _locate(raw, loc[:-1]), f"missing required {what} `{name}`", hint, pipeline, node
            )
        elif kind == "expression":
            ctx = err.get("ctx") or {}
            mark = _locate(raw, loc)
            offset = int(ctx.get("offset", 0))
            col = mark.col + offset + (1 if mark.style else 0)
            report.add(
                Mark(mark.line, col),
                f"{what} `{name}`: {ctx.get('message', err['msg'])}",
                ctx.get("hint"),
                pipeline,
                node,
            )
        else:
            msg = err["msg"]
            msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
            msg = msg[:1].lower() + msg[1:]
            label = f"{what} `{name}`: " if name else ""
            report.add(_locate(raw, loc), f"{label}{msg}", None, pipeline, node)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The nested options model that `loc` points into, for field-name hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not isinstance(current, type):
            continue
        if not issubclass(current, BaseModel):
            return None
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current = _model_in(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside `X`, `X | None`, `list[X]`, `dict[str, X]`, if any."""
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _first_sentence(text: str) -> str:
    return re.split(r"(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z`])", text)[0].rstrip(".")


__all__ = [
    "NodeSpec",
    "PipelineSpec",
    "Settings",
    "Spec",
    "check_cases",
    "did_you_mean",
    "load_spec",
    "load_spec_text",
    "split_ref",
    "validate",
]
