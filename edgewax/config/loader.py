"""Safe YAML loading that remembers where every key and value came from.

Plain YAML only: no Python tags, no custom tags. Duplicate keys are errors (PyYAML keeps the last
one silently). Aliases are allowed (anchors and `<<` merges are handy) but a document that would
expand past `MAX_NODES` is refused before anything is built, so an alias bomb fails fast in bounded
memory. Strings are interpolated from the environment (`${VAR}`) as they are read, so an error
points at the scalar that holds the reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edgewax.config.diagnostics import ConfigError, Diagnostic, Mark
from edgewax.config.interpolation import InterpolationError, interpolate

MAX_NODES = 100_000
MAX_BYTES = 8 * 1024 * 1024


class YMap(dict[Any, Any]):
    """A mapping that knows the position of itself, its keys and its values."""

    mark: Mark
    key_marks: dict[Any, Mark]
    value_marks: dict[Any, Mark]


class YList(list[Any]):
    """A sequence that knows the position of itself and its items."""

    mark: Mark
    item_marks: list[Mark]


def _mark(node: Node) -> Mark:
    style = node.style if isinstance(node, ScalarNode) and node.style in ("'", '"') else None
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1, style)


class _Loader(yaml.SafeLoader):
    def __init__(self, text: str, file: str, env: Mapping[str, str]) -> None:
        super().__init__(text)
        self.file = file
        self.env = env
        self.diagnostics: list[Diagnostic] = []

    def error(self, node: Node, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(self.file, _mark(node), message, hint))


def _construct_map(loader: _Loader, node: MappingNode) -> Iterator[YMap]:
    data = YMap()
    data.mark = _mark(node)
    data.key_marks = {}
    data.value_marks = {}
    yield data
    merges: list[YMap] = []
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            merged = loader.construct_object(value_node, deep=True)
            items = merged if isinstance(merged, list) else [merged]
            for item in items:
                if isinstance(item, YMap):
                    merges.append(item)
                else:
                    loader.error(value_node, "`<<` merges only mappings")
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            loader.error(key_node, "a mapping key must be a plain value")
            continue
        if key in data:
            first = data.key_marks[key]
            loader.error(
                key_node,
                f"duplicate key `{key}`",
                f"first given at line {first.line}; YAML would silently keep only the last one",
            )
            continue
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_marks[key] = _mark(key_node)
        data.value_marks[key] = _mark(value_node)
    # Explicit keys win over merged ones, and the first merged mapping wins over later ones.
    for merged_map in merges:
        for key, value in merged_map.items():
            if key not in data:
                data[key] = value
                data.key_marks[key] = merged_map.key_marks[key]
                data.value_marks[key] = merged_map.value_marks[key]


def _construct_seq(loader: _Loader, node: SequenceNode) -> Iterator[YList]:
    data = YList()
    data.mark = _mark(node)
    data.item_marks = []
    yield data
    for child in node.value:
        data.append(loader.construct_object(child, deep=True))
        data.item_marks.append(_mark(child))


def _construct_str(loader: _Loader, node: ScalarNode) -> str:
    text = loader.construct_scalar(node)
    assert isinstance(text, str)
    try:
        return interpolate(text, loader.env)
    except InterpolationError as e:
        loader.error(node, e.message, e.hint)
        return text


def _construct_undefined(loader: _Loader, node: Node) -> None:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    loader.error(
        node, f"tag `{tag}` is not allowed", "edgewax reads plain YAML: no Python or custom tags"
    )


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:omap", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Loader.add_constructor(None, _construct_undefined)


def _expanded_size(root: Node) -> int:
    """Nodes the document would have with every alias expanded, without expanding any."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk: a deeply nested document must not blow Python's stack here.
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _syntax_error(file: str, e: yaml.MarkedYAMLError) -> Diagnostic:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = (e.problem or e.context or "invalid YAML").replace("<stream end>", "end of file")
    hint = None
    if "expected a single document" in str(e.context or ""):
        problem = "expected a single YAML document, found more than one"
        hint = "remove the `---` line"
    elif mark and e.context and e.context_mark and e.context_mark.line != mark.line:
        hint = (
            f"{e.context} that starts at line {e.context_mark.line + 1}, column "
            f"{e.context_mark.column + 1}"
        )
    elif "\\t" in problem:
        hint = "indent with spaces, not tabs"
    return Diagnostic(file, Mark(line, col), f"YAML syntax error: {problem}", hint)


def read_text(path: Path, file: str) -> str:
    """The text of a config file, or a ConfigError saying why it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [Diagnostic(file, Mark(1, 1), "file not found", "give the path of a pipelines.yaml")]
        ) from None
    except OSError as e:
        raise ConfigError([Diagnostic(file, Mark(1, 1), f"cannot read: {e.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            [Diagnostic(file, Mark(1, 1), f"file is larger than {MAX_BYTES // 2**20} MiB")]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            [Diagnostic(file, Mark(1, 1), f"file is not UTF-8 text (byte {e.start})")]
        ) from None


def load_yaml_text(text: str, file: str, env: Mapping[str, str]) -> Any:
    """Load one YAML document from `text`; `file` is the name used in diagnostics."""
    loader = _Loader(text, file, env)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            raise ConfigError([_syntax_error(file, e)]) from None
        except RecursionError:
            raise ConfigError([Diagnostic(file, Mark(1, 1), "YAML nests too deeply")]) from None
        if root is None:
            raise ConfigError(
                [Diagnostic(file, Mark(1, 1), "file is empty", "start with `version: 1`")]
            )
        if _expanded_size(root) > MAX_NODES:
            raise ConfigError(
                [
                    Diagnostic(
                        file,
                        _mark(root),
                        f"document expands to more than {MAX_NODES} values through aliases",
                        "an alias bomb? use fewer nested `*alias` references",
                    )
                ]
            )
        data = loader.construct_document(root)
    finally:
        loader.dispose()
    if loader.diagnostics:
        raise ConfigError(loader.diagnostics)
    return data
