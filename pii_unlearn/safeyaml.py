"""Reading YAML a user hands us (policies, configs) safely: no objects, no duplicate keys, bounded aliases.

``yaml.safe_load`` never runs code, but anchors and aliases can still expand a
1 KB file into gigabytes ("billion laughs"): the aliases are shared while loading,
and blow up only when the value is walked or copied. :func:`load_yaml` counts
the expanded size of the document before building it and refuses one past
:data:`MAX_EXPANDED_NODES`; every problem is one :class:`InputError` line naming
the source and line, never the value itself.
"""

from __future__ import annotations

from typing import Any

import yaml

from pii_unlearn.errors import InputError

#: Most nodes a document may hold once its aliases are expanded.
MAX_EXPANDED_NODES = 100_000


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: let the base loader report it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {str(key)[:40]!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def expanded_size(node: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """Nodes in ``node`` with every alias expanded, counted in linear time (stops past ``limit``)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, done = stack.pop()
        if id(current) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        elif isinstance(current, yaml.MappingNode):
            children = [n for pair in current.value for n in pair]
        if done:
            sizes[id(current)] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
        else:
            stack.append((current, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(node)]


def load_yaml(text: str, where: str) -> Any:
    """The value of one YAML document, safely; errors are one line starting with ``where``."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_EXPANDED_NODES:
            raise InputError(
                f"{where}: the YAML expands to more than {MAX_EXPANDED_NODES:,} values "
                "through anchors and aliases; refusing it"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{where}: {line}invalid YAML ({problem})") from None
    finally:
        loader.dispose()
