"""The one reader of user YAML files (family specs): strict where PyYAML is lenient.

Refused, each in one line naming the file: text that is not UTF-8 (UTF-16/32 named by their byte
order mark), files over MAX_BYTES, invalid YAML, a key given twice in one mapping (PyYAML keeps the
last silently), and anchors/aliases that expand to more than MAX_EXPANDED_NODES nodes (a "billion
laughs" file is a few hundred bytes that expand to gigabytes when its values are read or printed).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

from l0eval.errors import SpecError

MAX_BYTES = 4 << 20  # a family file is a few KB; even thousands of members stay far below this
MAX_EXPANDED_NODES = 100_000  # nodes after expanding every alias: far above any real family file

_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
         (codecs.BOM_UTF16_BE, "UTF-16"))

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader that refuses a repeated key in a mapping."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise SpecError(f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line})")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | Path) -> Any:
    """A YAML file's content, or a one-line SpecError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"family file not found: {path}")
    try:
        return parse_yaml(_text(path))
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from exc


def parse_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise SpecError(f"anchors and aliases expand to more than {MAX_EXPANDED_NODES:,} values; write the "
                            "values out")
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML ({str(exc).splitlines()[0]})") from exc
    finally:
        loader.dispose()


def _text(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise SpecError(f"{path}: over {MAX_BYTES >> 20} MB, not a family file")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise SpecError(f"{path}: the file is {encoding} text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as "
                        "UTF-8") from exc


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes in the document with every alias expanded (an alias is the same node object again)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a recursive alias counts once rather than forever
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = []
    sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]
