"""The `edgewax` command: run, top, validate, graph, schema, nodes, docs, explain, inspect-model,
test.

Exit codes: 0 done, 1 a run-time failure, 2 a mistake in the config or the command line.
Logs go to standard error; data goes to sinks (so `sink.stdout` output can be piped).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewax import __version__
from edgewax.errors import EdgewaxError

if TYPE_CHECKING:
    from edgewax.config.spec import MetricsSettings, Spec
    from edgewax.flows.compiler import Compiled
    from edgewax.metrics.live import LiveView

log = logging.getLogger("edgewax")

DEFAULT_FILE = "pipelines.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgewax",
        description="Declarative edge-ML stream pipelines, compiled into Bytewax dataflows.",
    )
    p.add_argument("--version", action="version", version=f"edgewax {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run pipelines until their sources end or SIGINT/SIGTERM")
    run.add_argument("file", nargs="?", default=DEFAULT_FILE, help="default: ./pipelines.yaml")
    run.add_argument(
        "--pipeline",
        "-p",
        action="append",
        metavar="NAME",
        help="run only this pipeline (repeatable); default: all",
    )
    run.add_argument(
        "--workers",
        "-w",
        type=int,
        default=int(os.environ.get("EDGEWAX_WORKERS", "1")),
        metavar="N",
        help="worker threads (default 1)",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="default: settings.log_level",
    )
    run.add_argument(
        "--quiet", "-q", action="store_true", help="no live status and no summary at the end"
    )
    _metrics_arguments(run)
    _scale_arguments(run)

    _top_parser(sub)

    val = sub.add_parser("validate", help="check a pipelines file; every mistake, one line each")
    val.add_argument("file", nargs="?", default=DEFAULT_FILE)

    graph = sub.add_parser("graph", help="print the pipelines as a graph")
    graph.add_argument("file", nargs="?", default=DEFAULT_FILE)
    graph.add_argument("--format", "-f", choices=["mermaid", "dot"], default="mermaid")
    graph.add_argument("--pipeline", "-p", action="append", metavar="NAME")

    schema = sub.add_parser("schema", help="print the JSON Schema of pipelines.yaml")
    schema.add_argument("--indent", type=int, default=2)

    sub.add_parser("nodes", help="list the node types")

    _explain_parser(sub)

    docs = sub.add_parser("docs", help="write the node reference (docs/nodes.md)")
    docs.add_argument("--output", "-o", default="-", help="file to write; default: stdout")
    docs.add_argument(
        "--check", action="store_true", help="exit 1 if --output differs from what would be written"
    )
    _inspect_model_parser(sub)
    _test_parser(sub)
    return p


def _test_parser(sub: Any) -> None:
    t = sub.add_parser(
        "test",
        help="run a pipeline's test cases (`tests:` in the file or FILE_test.yaml beside it)",
    )
    t.add_argument(
        "file",
        nargs="?",
        default=DEFAULT_FILE,
        help="a pipelines file (its `tests:` and <stem>_test.yaml) or a *_test.yaml file",
    )
    t.add_argument("-k", metavar="TEXT", help="run only cases whose name contains TEXT")
    t.add_argument(
        "--verbose", "-v", action="store_true", help="also print each case's bytes out / in"
    )


def _test(args: argparse.Namespace) -> int:
    from edgewax.flows.casetest import load_suite, run_suite

    logging.getLogger().setLevel(logging.WARNING)
    suite = load_suite(Path(args.file), display=args.file)
    return run_suite(suite, args.k, args.verbose)


def _inspect_model_parser(sub: Any) -> None:
    im = sub.add_parser(
        "inspect-model",
        help="show a .tflite model's inputs, outputs, quantisation, ops, size and sha256",
    )
    im.add_argument("model", metavar="FILE", help="a .tflite file")
    im.add_argument("--json", action="store_true", help="print JSON")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from edgewax.config.diagnostics import ConfigError

    try:
        command = {
            "run": _run,
            "validate": _validate,
            "graph": _graph,
            "schema": _schema,
            "nodes": _nodes,
            "docs": _docs,
            "explain": _explain,
            "inspect-model": _inspect_model,
            "top": _top,
            "test": _test,
        }[args.command]
        return command(args)
    except ConfigError as e:
        print(e, file=sys.stderr)
        n = len(e.diagnostics)
        print(f"{n} problem{'s' if n != 1 else ''} found", file=sys.stderr)
        return 2
    except EdgewaxError as e:
        print(f"edgewax: error: {e}", file=sys.stderr)
        return 1


def _load(file: str) -> Spec:
    from edgewax.config.spec import load_spec

    return load_spec(Path(file), display=file)


def _run(args: argparse.Namespace) -> int:
    from edgewax.flows.compiler import compile_spec
    from edgewax.flows.runner import run

    spec = _load(args.file)
    logging.getLogger().setLevel((args.log_level or spec.settings.log_level).upper())
    if args.workers < 1:
        raise EdgewaxError("--workers must be at least 1")
    cluster, recovery, interval = _scale_settings(spec, args)
    total = args.workers * (cluster.size if cluster is not None else 1)
    compiled = compile_spec(spec, args.pipeline, workers=total)
    names = ", ".join(p.name for p in compiled.pipelines)
    log.info(
        "running %s from %s (%d worker%s%s%s)",
        names,
        args.file,
        args.workers,
        "s" if args.workers > 1 else "",
        f", process {cluster.process_id} of {cluster.size}" if cluster is not None else "",
        f", recovery every {interval:g} s in {spec.state_dir / 'recovery'}" if recovery else "",
    )
    metrics, required = _metrics_settings(spec, args)
    if metrics is not None and cluster is not None and cluster.process_id:
        # Processes of one cluster often share a host: each serves on its own port.
        metrics = metrics.model_copy(update={"port": metrics.port + cluster.process_id})
    live = _live_view(compiled) if not args.quiet else None
    if live is not None:
        live.start()
    try:
        result = run(
            compiled,
            workers=args.workers,
            metrics=metrics,
            metrics_required=required,
            engine_metrics=args.engine_metrics,
            cluster=cluster,
            recovery=recovery,
            snapshot_interval=interval,
        )
    finally:
        if live is not None:
            live.stop()
    if not args.quiet:
        _summary(compiled, result.seconds)
    return 0


def _metrics_arguments(run: argparse.ArgumentParser) -> None:
    g = run.add_argument_group("metrics endpoint (settings.metrics)")
    g.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics, /healthz, /readyz on this port (default 9464)",
    )
    g.add_argument(
        "--metrics-host",
        metavar="ADDR",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 is every interface)",
    )
    g.add_argument("--no-metrics", action="store_true", help="serve no endpoint")
    g.add_argument(
        "--engine-metrics",
        action="store_true",
        help="also start Bytewax's own dataflow API (listens on 0.0.0.0:3030, no auth)",
    )


def _scale_arguments(run: argparse.ArgumentParser) -> None:
    g = run.add_argument_group("scale-out and recovery (see README: Scaling out)")
    g.add_argument(
        "--process-id",
        "-i",
        type=int,
        default=_env_int("EDGEWAX_PROCESS_ID"),
        metavar="I",
        help="this process's index in a multi-process run, 0 to N-1 (env EDGEWAX_PROCESS_ID)",
    )
    g.add_argument(
        "--addresses",
        "-a",
        default=os.environ.get("EDGEWAX_ADDRESSES"),
        metavar="HOST:PORT;...",
        help="every process's host:port, in process-id order (env EDGEWAX_ADDRESSES)",
    )
    g.add_argument(
        "--recovery",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep snapshots in state_dir/recovery and resume from them (settings.recovery)",
    )
    g.add_argument(
        "--snapshot-interval",
        type=float,
        metavar="S",
        help="seconds between recovery snapshots (default settings.recovery.snapshot_interval, "
        "10); implies --recovery",
    )


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"edgewax: error: ${name} must be an integer, not `{value}`") from None


def _scale_settings(spec: Spec, args: argparse.Namespace) -> tuple[Any, bool, float]:
    """The cluster (None: one process), whether recovery is on, the snapshot interval."""
    from edgewax.flows.runner import Cluster

    cluster = Cluster.parse(args.process_id, args.addresses)
    if cluster is not None and cluster.size > 1:
        spec.state_subdir = f"proc-{cluster.process_id}"
    settings = spec.settings.recovery
    interval = float(settings.snapshot_interval)
    if args.snapshot_interval is not None:
        if args.snapshot_interval <= 0:
            raise EdgewaxError("--snapshot-interval must be more than 0")
        interval = args.snapshot_interval
    recovery = settings.enabled if args.recovery is None else args.recovery
    if args.snapshot_interval is not None and args.recovery is None:
        recovery = True
    return cluster, recovery, interval


def _metrics_settings(spec: Spec, args: argparse.Namespace) -> tuple[MetricsSettings | None, bool]:
    """The endpoint to serve, and whether failing to bind it is an error (it was asked for)."""
    settings = spec.settings.metrics
    if args.no_metrics:
        return None, False
    update: dict[str, object] = {}
    if args.metrics_port is not None:
        if not 1 <= args.metrics_port <= 65535:
            raise EdgewaxError("--metrics-port must be 1 to 65535 (--no-metrics turns it off)")
        update.update(port=args.metrics_port, enabled=True)
    if args.metrics_host is not None:
        update.update(host=args.metrics_host, enabled=True)
    required = bool(update) or bool({"port", "host"} & settings.model_fields_set)
    return settings.model_copy(update=update), required


def _live_view(compiled: Compiled) -> LiveView | None:
    """The status pinned to the bottom of the terminal, when stderr is one."""
    import time

    from edgewax.metrics.live import LiveView, wanted
    from edgewax.metrics.status import Snapshot

    if not wanted(sys.stderr):
        return None
    started = time.monotonic()
    n = len(compiled.pipelines)

    def header() -> str:
        ready = "ready" if compiled.health.ready() else "not ready"
        seconds = int(time.monotonic() - started)
        return (
            f"edgewax run · {n} pipeline{'s' if n != 1 else ''} · "
            f"{seconds // 60}:{seconds % 60:02d} · {ready}"
        )

    registry = compiled.metrics.registry
    return LiveView(lambda: Snapshot.from_registry(registry), sys.stderr, header=header)


def _summary(compiled: Compiled, seconds: float) -> None:
    """Per pipeline and node: what came in, went out, was dropped and why."""
    out = sys.stderr
    print(f"edgewax: finished in {seconds:.1f} s", file=out)
    for p in compiled.pipelines:
        print(f"  pipeline {p.name}", file=out)
        width = max(len(n.id) for n in p.nodes)
        for n in p.nodes:
            st = compiled.stats[(p.name, n.id)]
            received = int(st.received._value.get())
            sent = int(st.sent._value.get())
            dropped = ", ".join(f"{int(v)} {r}" for r, v in sorted(st.discarded().items()) if v)
            line = f"    {n.id:<{width}}  {n.type_name:<16} in {received:>9}  out {sent:>9}"
            print(line + (f"  dropped: {dropped}" if dropped else ""), file=out)
    if compiled.dead_letters.count:
        print(
            f"  {compiled.dead_letters.count} dead letter(s) in {compiled.dead_letters.path}",
            file=out,
        )


def _top_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = sub.add_parser("top", help="watch a running instance through its /metrics")
    top.add_argument(
        "url",
        nargs="?",
        default="http://127.0.0.1:9464/metrics",
        help="its endpoint, e.g. 10.0.0.7:9464 (default http://127.0.0.1:9464/metrics)",
    )
    top.add_argument("--once", action="store_true", help="print the status once and exit")
    top.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between scrapes"
    )
    top.add_argument(
        "--user", help="basic-auth user; the password comes from $EDGEWAX_METRICS_PASSWORD"
    )
    top.add_argument("--cafile", help="CA certificate to check an HTTPS endpoint with")
    top.add_argument(
        "--insecure", action="store_true", help="do not check the HTTPS endpoint's certificate"
    )


def _top(args: argparse.Namespace) -> int:
    from edgewax.metrics.live import top
    from edgewax.metrics.scrape import Endpoint

    if args.interval <= 0:
        raise EdgewaxError("--interval must be more than 0")
    password = os.environ.get("EDGEWAX_METRICS_PASSWORD")
    if args.user and password is None:
        raise EdgewaxError("--user needs the password in $EDGEWAX_METRICS_PASSWORD")
    endpoint = Endpoint(args.url, args.user, password, args.cafile, args.insecure)
    with contextlib.suppress(BrokenPipeError):  # `edgewax top --once | head`
        top(
            endpoint.snapshot,
            sys.stdout,
            interval=args.interval,
            header=endpoint.header,
            once=args.once,
        )
    return 0


def _validate(args: argparse.Namespace) -> int:
    spec = _load(args.file)
    nodes = sum(len(p.nodes) for p in spec.pipelines.values())
    n = len(spec.pipelines)
    print(f"{args.file}: ok ({n} pipeline{'s' if n != 1 else ''}, {nodes} nodes)")
    return 0


def _graph(args: argparse.Namespace) -> int:
    from edgewax.flows.compiler import select_pipelines
    from edgewax.flows.graph import dot, mermaid

    spec = _load(args.file)
    chosen = select_pipelines(spec, args.pipeline)
    print(mermaid(chosen) if args.format == "mermaid" else dot(chosen))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from edgewax.config.reference import json_schema

    print(json.dumps(json_schema(), indent=args.indent))
    return 0


def _nodes(args: argparse.Namespace) -> int:
    from edgewax.operators.registry import node_types

    types = node_types()
    width = max(len(n) for n in types)
    for name, cls in types.items():
        print(f"{name:<{width}}  {cls.kind:<9}  {cls.summary()}")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from edgewax.config.reference import node_reference

    text = node_reference()
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is out of date: run `edgewax docs -o {path}`", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return 0


def _explain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explain = sub.add_parser(
        "explain", help="what can leave the device: fields and paths per remote sink"
    )
    explain.add_argument("file", nargs="?", default=DEFAULT_FILE)
    explain.add_argument("--pipeline", "-p", action="append", metavar="NAME")
    explain.add_argument(
        "--replay",
        action="store_true",
        help="run over the file sources with sinks replaced by counters; print what would have "
        "left (events, bytes, per day) and what each node dropped",
    )


def _explain(args: argparse.Namespace) -> int:
    from edgewax.flows.compiler import select_pipelines
    from edgewax.flows.explain import explain

    spec = _load(args.file)
    if args.replay:
        logging.getLogger().setLevel(logging.WARNING)
    sys.stdout.write(explain(spec, select_pipelines(spec, args.pipeline), args.replay))
    return 0


def _inspect_model(args: argparse.Namespace) -> int:
    from edgewax.inference.inspect import format_inspection, inspect_model

    info = inspect_model(Path(args.model))
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
