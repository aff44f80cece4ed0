"""Edit key lines of one node in the cluster file, keeping every other byte.

Re-keying changes a node's keys in a file an administrator wrote, with
comments and layout of their own; rewriting it from parsed data would lose
them. Only `key = "value"` lines inside the node's [[nodes]] table change.
"""

from __future__ import annotations

import re

from netsetup.errors import NetsetupError

TABLE_RE = re.compile(r"^\s*\[")
NAME_RE = re.compile(r'^\s*name\s*=\s*"([^"]*)"\s*(#.*)?$')


def _key_re(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(key)}\s*=")


def _node_block(lines: list[str], node: str) -> tuple[int, int]:
    """Return [start, end) line indexes of the [[nodes]] table of `node`."""
    starts = [i for i, line in enumerate(lines) if TABLE_RE.match(line)]
    for n, start in enumerate(starts):
        if lines[start].strip() != "[[nodes]]":
            continue
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        for line in lines[start + 1:end]:
            match = NAME_RE.match(line.rstrip("\r\n"))
            if match and match.group(1) == node:
                return start, end
    raise NetsetupError(f"cluster file: no [[nodes]] table with name {node!r}")


def set_node_fields(text: str, node: str, fields: dict[str, str | None]) -> str:
    """Return `text` with each field of `node` set (None: removed)."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    for key, value in fields.items():
        start, end = _node_block(lines, node)
        pattern = _key_re(key)
        found = [i for i in range(start + 1, end) if pattern.match(lines[i])]
        if value is None:
            for i in reversed(found):
                del lines[i]
            continue
        new = f'{key} = "{value}"{newline}'
        if found:
            lines[found[0]] = new
            continue
        # after the last non-blank line of the table
        last = end - 1
        while last > start and not lines[last].strip():
            last -= 1
        if not lines[last].endswith("\n"):
            lines[last] += newline
        lines.insert(last + 1, new)
    return "".join(lines)


def set_cluster_field(text: str, key: str, value: str) -> str:
    """Return `text` with `key = "value"` set in its [cluster] table."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    starts = [i for i, line in enumerate(lines) if TABLE_RE.match(line)]
    try:
        start = next(i for i in starts if lines[i].strip() == "[cluster]")
    except StopIteration:
        raise NetsetupError("cluster file: no [cluster] table") from None
    end = next((i for i in starts if i > start), len(lines))
    pattern = _key_re(key)
    new = f'{key} = "{value}"{newline}'
    for i in range(start + 1, end):
        if pattern.match(lines[i]):
            lines[i] = new
            return "".join(lines)
    lines.insert(start + 1, new)
    return "".join(lines)
