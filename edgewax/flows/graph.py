"""`edgewax graph`: the pipelines as Mermaid or Graphviz dot text."""

from __future__ import annotations

from edgewax.config.spec import PipelineSpec

_SHAPES_MERMAID = {"source": ('(["', '"])'), "transform": ('["', '"]'), "sink": ('[/"', '"/]')}
_SHAPES_DOT = {"source": "invhouse", "transform": "box", "sink": "house"}


def mermaid(pipelines: list[PipelineSpec]) -> str:
    """A Mermaid flowchart, one subgraph per pipeline.

    >>> from edgewax.config.spec import load_spec_text
    >>> from pathlib import Path
    >>> spec = load_spec_text('''
    ... version: 1
    ... pipelines:
    ...   p:
    ...     nodes:
    ...       - {id: s, type: sensor.synthetic}
    ...       - {id: o, type: sink.stdout}
    ... ''', Path("."))
    >>> print(mermaid(list(spec.pipelines.values())))
    flowchart LR
      subgraph p0["p"]
        p0n0(["s<br/><small>sensor.synthetic</small>"])
        p0n1[/"o<br/><small>sink.stdout</small>"/]
        p0n0 --> p0n1
      end
    """
    lines = ["flowchart LR"]
    for k, p in enumerate(pipelines):
        # Mermaid ids are positional: node ids may hold `-`, which Mermaid reads as an arrow.
        mid = {n.id: f"p{k}n{j}" for j, n in enumerate(p.nodes)}
        lines.append(f'  subgraph p{k}["{p.name}"]')
        for n in p.nodes:
            left, right = _SHAPES_MERMAID[n.cls.kind]
            lines.append(f"    {mid[n.id]}{left}{n.id}<br/><small>{n.type_name}</small>{right}")
        for n in p.nodes:
            for i in n.inputs:
                src, output = i.partition(".")[::2]
                label = f"|{output}|" if output else ""
                lines.append(f"    {mid[src]} -->{label} {mid[n.id]}")
        lines.append("  end")
    return "\n".join(lines)


def dot(pipelines: list[PipelineSpec]) -> str:
    """A Graphviz digraph, one cluster per pipeline."""
    lines = ["digraph edgewax {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for k, p in enumerate(pipelines):
        lines.append(f"  subgraph cluster_{k} {{")
        lines.append(f'    label="{_esc(p.name)}";')
        for n in p.nodes:
            lines.append(
                f'    "{_esc(p.name)}/{_esc(n.id)}" [label="{_esc(n.id)}\\n{_esc(n.type_name)}", '
                f"shape={_SHAPES_DOT[n.cls.kind]}];"
            )
        for n in p.nodes:
            for i in n.inputs:
                src, output = i.partition(".")[::2]
                label = f' [label="{_esc(output)}"]' if output else ""
                lines.append(
                    f'    "{_esc(p.name)}/{_esc(src)}" -> "{_esc(p.name)}/{_esc(n.id)}"{label};'
                )
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines)


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
