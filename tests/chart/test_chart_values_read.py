"""Every value in values.yaml is read by some template: a key that nothing reads is a knob that does nothing.

The templates are read, not rendered (a value may matter only when another one switches a feature on): each
reference is followed through the variables, `with` and `range` blocks and helper arguments that carry it,
so `$group := .group` in a helper that the worker groups are passed to makes `$group.sharedMemorySize` read
`workerGroups[].sharedMemorySize`. A reference used as a whole value (toYaml, a test, dig, merge, an argument
other than a helper's) reads everything under it; `index`, `get` and `hasKey` read the key they name (any key
when it is computed); a reference only passed on reads nothing by itself. No allow-list: every value is read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from chart_support import CHART

ANY = "[]"  # a list item, or any key of a map that a template ranges over
Keys = tuple[str, ...]
LOOKUPS = ("index", "get", "hasKey")
# A symbolic value: the chart's root context ("ROOT",), a values path ("V", ...), or a dict literal that a
# helper was called with ("DICT", id, key, ...).
Ref = tuple[Any, ...]

COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.S)
# An action, whose strings may hold braces (NOTES.txt quotes a kubectl go-template).
ACTION = re.compile(r'\{\{-?((?:"(?:\\.|[^"\\])*"|`[^`]*`|[^"`}]|\}(?!\}))*?)-?\}\}', re.S)
TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`|:=|[()|,=]|[^\s()|,="`]+')
REFERENCE = re.compile(r"^(\$\w*|\.)?((?:\.[\w]+)*)$")


def value_leaves(tree: Any, prefix: Keys = ()) -> list[Keys]:
    """values.yaml's leaf paths; a list's items share the segment `[]`, an empty map or list is a leaf."""
    if isinstance(tree, dict) and tree:
        return [leaf for key, value in tree.items() for leaf in value_leaves(value, (*prefix, str(key)))]
    if isinstance(tree, list) and any(isinstance(item, dict) for item in tree):
        return sorted({leaf for item in tree for leaf in value_leaves(item, (*prefix, ANY))})
    return [prefix]


def items(refs: set[Ref]) -> set[Ref]:
    """The items a range over these values yields; one `[]` stands for any depth of nesting, so a helper
    that recurses into its own items (rayvllm.models.merge) reaches a fixed point."""
    return {ref if ref[-1] == ANY else (*ref, ANY) for ref in refs}


class Reader:
    """What the chart's templates read of `.Values`, as paths (`[]` where a range stands for any item)."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = {name: COMMENT.sub("", text) for name, text in sources.items()}
        self.helper_dots: dict[str, set[Ref]] = defaultdict(set)
        self.dicts: dict[str, dict[str, set[Ref]]] = defaultdict(lambda: defaultdict(set))
        self.read: set[Keys] = set()

    def run(self) -> set[Keys]:
        # Helpers learn their argument from call sites in other helpers, so repeat until nothing new.
        while True:
            before = self.snapshot()
            self.read = set()
            for name, text in self.sources.items():
                self.scan(name, text)
            if self.snapshot() == before:
                return self.read

    def snapshot(self) -> tuple[int, int]:
        bindings = sum(len(refs) for keys in self.dicts.values() for refs in keys.values())
        return sum(map(len, self.helper_dots.values())), bindings

    def scan(self, name: str, text: str) -> None:
        scope_dot: set[Ref] = {("ROOT",)}
        variables: dict[str, set[Ref]] = {"$": scope_dot}
        dots = [scope_dot]  # the dot of each open block
        kinds: list[str] = []
        for index, match in enumerate(ACTION.finditer(text)):
            tokens = TOKEN.findall(match.group(1))
            if not tokens:
                continue
            head = tokens[0]
            if head == "define":
                helper = tokens[1].strip('"')
                scope_dot = self.helper_dots[helper]
                variables, dots, kinds = {"$": scope_dot}, [scope_dot], ["define"]
            elif head == "end":
                kinds.pop()
                dots.pop() if len(dots) > 1 else None
            elif head == "else":
                if kinds and kinds[-1] in ("with", "range"):
                    dots[-1] = dots[-2]  # the else branch keeps the outer dot
                if len(tokens) > 1:
                    self.use(tokens[2:], variables, dots[-1], f"{name}:{index}")
            elif head in ("with", "range"):
                kinds.append(head)
                body = tokens[1:]
                if ":=" in body:
                    names, body = body[: body.index(":=")], body[body.index(":=") + 1 :]
                    value = self.bind(body, variables, dots[-1], f"{name}:{index}")
                    value = items(value) if head == "range" else value
                    variables.setdefault([n for n in names if n != ","][-1], set()).update(value)
                    dots.append(dots[-1])
                else:
                    value = self.bind(body, variables, dots[-1], f"{name}:{index}")
                    dots.append(items(value) if head == "range" else value)
            elif head in ("if", "block"):
                kinds.append(head)
                dots.append(dots[-1])
                self.use(tokens[1:], variables, dots[-1], f"{name}:{index}")
            elif len(tokens) > 2 and tokens[0].startswith("$") and tokens[1] in (":=", "="):
                value = self.bind(tokens[2:], variables, dots[-1], f"{name}:{index}")
                variables.setdefault(tokens[0], set()).update(value)
            else:
                self.use(tokens, variables, dots[-1], f"{name}:{index}")

    def resolve(self, token: str, variables: dict[str, set[Ref]], dot: set[Ref]) -> set[Ref]:
        match = REFERENCE.match(token)
        if not match or token in ("", ",") or token[0].isdigit() or token[0] == "-":
            return set()
        base, fields = match.groups()
        if base is None and not fields:
            return set()
        starts = dot if base in (None, ".") else variables.get(base, set())
        result = set()
        for start in starts:
            ref = start
            for field in fields.split(".")[1:]:
                ref = self.field(ref, field)
                if ref is None:
                    break
            if ref is not None:
                result |= self.expand(ref)
        return result

    def field(self, ref: Ref, name: str) -> Ref | None:
        if ref == ("ROOT",):
            return ("V",) if name == "Values" else None
        return (*ref, name)

    def expand(self, ref: Ref) -> set[Ref]:
        """A path through a dict literal becomes the paths of the values that the dict was built with."""
        if ref[0] != "DICT" or len(ref) == 2:
            return {ref}
        found = set()
        for start in self.dicts[ref[1]][ref[2]]:
            tail: Ref = start
            for field in ref[3:]:
                tail = self.field(tail, field)  # type: ignore[assignment]
                if tail is None:
                    break
            if tail is not None:
                found |= self.expand(tail)
        return found

    def bind(self, tokens: list[str], variables: dict[str, set[Ref]], dot: set[Ref], site: str) -> set[Ref]:
        """The symbolic value of a pipeline that only passes a reference on (`$x := .Values.a | default
        dict`); any other pipeline reads what it references, and its value is unknown."""
        if tokens and (len(tokens) == 1 or tokens[1] == "|") and REFERENCE.match(tokens[0]):
            self.use(tokens[1:], variables, dot, site)
            return self.resolve(tokens[0], variables, dot)
        if len(tokens) > 2 and tokens[0] in LOOKUPS and REFERENCE.match(tokens[1]):
            keys, rest = self.keys(tokens[2:])
            self.use(rest, variables, dot, site)
            return {(*ref, *keys) for ref in self.resolve(tokens[1], variables, dot)}
        self.use(tokens, variables, dot, site)
        return set()

    def use(self, tokens: list[str], variables: dict[str, set[Ref]], dot: set[Ref], site: str) -> None:
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token in ("include", "template") and position + 2 < len(tokens):
                helper = tokens[position + 1].strip('"')
                argument, position = self.argument(tokens, position + 2, variables, dot, site)
                self.helper_dots[helper] |= argument
                continue
            if token in LOOKUPS and position + 2 < len(tokens) and REFERENCE.match(tokens[position + 1]):
                keys, rest = self.keys(tokens[position + 2 :])
                for ref in self.resolve(tokens[position + 1], variables, dot):
                    if ref[0] == "V":
                        self.read.add((*ref[1:], *keys))
                self.use(rest, variables, dot, site)
                return
            if token == "dict" and (position == 0 or tokens[position - 1] == "("):
                position += 1  # a dict not passed to a helper: its values count as read
                continue
            for ref in self.resolve(token, variables, dot):
                if ref[0] == "V":
                    self.read.add(ref[1:])
            position += 1

    @staticmethod
    def keys(tokens: list[str]) -> tuple[tuple[str, ...], list[str]]:
        """The keys of an `index`/`get`/`hasKey` lookup (`[]` for one computed at render time), and what
        follows the lookup."""
        if tokens[0].startswith('"'):
            keys = [tokens[0].strip('"')]
            while len(tokens) > len(keys) and tokens[len(keys)].startswith('"'):
                keys.append(tokens[len(keys)].strip('"'))
            return tuple(keys), tokens[len(keys) :]
        return (ANY,), tokens

    def argument(
        self, tokens: list[str], position: int, variables: dict[str, set[Ref]], dot: set[Ref], site: str
    ) -> tuple[set[Ref], int]:
        """A helper's argument: one reference, or a `(dict "key" value ...)` whose values it is passed."""
        if tokens[position] != "(" or position + 1 >= len(tokens) or tokens[position + 1] != "dict":
            return self.resolve(tokens[position], variables, dot), position + 1
        identity = f"{site}:{position}"
        position += 2
        while position < len(tokens) and tokens[position] != ")":
            key = tokens[position].strip('"')
            if tokens[position + 1] == "(":
                depth, end = 0, position + 1
                while True:
                    depth += {"(": 1, ")": -1}.get(tokens[end], 0)
                    if depth == 0:
                        break
                    end += 1
                self.use(tokens[position + 2 : end], variables, dot, site)
                position = end + 1
            else:
                self.dicts[identity][key] |= self.resolve(tokens[position + 1], variables, dot)
                position += 2
        return {("DICT", identity)}, position + 1


def chart_sources() -> dict[str, str]:
    templates = CHART / "templates"
    return {str(p.relative_to(templates)): p.read_text() for p in sorted(templates.rglob("*")) if p.is_file()}


def covers(read: Keys, leaf: Keys) -> bool:
    """A read path covers a leaf under it, and an empty map or list whose items it reads."""
    return all(a == b or ANY in (a, b) for a, b in zip(read, leaf, strict=False))


def unread(values: Any, sources: dict[str, str]) -> list[str]:
    read = Reader(sources).run()
    return [".".join(leaf) for leaf in value_leaves(values) if not any(covers(r, leaf) for r in read)]


def test_every_value_is_read_by_a_template() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert unread(values, chart_sources()) == []


def test_the_lint_follows_references_and_catches_a_dead_key(tmp_path: Path) -> None:
    values = {
        "group": {"used": 1, "dead": 2},
        "workers": [{"name": "a", "gpus": 1, "unused": 3}],
        "labels": {"team": "x"},
        "cache": {"path": "/c", "size": "1Gi"},
    }
    sources = {
        "_h.tpl": '{{- define "h.volume" -}}{{ .cache.path }}{{ .root.Values.group.used }}{{- end }}',
        "a.yaml": (
            "{{- $values := .Values }}{{- range $i, $w := $values.workers }}{{ $w.name }}{{ end }}"
            "{{- range .Values.workers }}{{ .gpus }}{{ end }}"
            "{{- with .Values.labels }}{{ toYaml . }}{{ end }}"
            '{{ include "h.volume" (dict "root" $ "cache" .Values.cache) }}'
        ),
    }
    assert unread(values, sources) == ["group.dead", "workers.[].unused", "cache.size"]
