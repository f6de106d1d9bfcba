#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a cycle.

For every crate of the workspace, each module (a file, or an inline `mod x { }` is counted
with its file) and every path it names with `crate::` or `super::` (in `use` trees and in
code) gives an edge between two sibling modules: the children of the deepest module that holds
both. A module naming its own ancestors' items is not an edge (a child may use what its parent
defines); test code (`#[cfg(test)]` modules, `tests.rs`, `tests/` directories) is left out.
Any cycle among siblings is reported with the imports that make it, and the exit status is 1.

Usage: scripts/module_cycles.py [CRATE_DIR ...]   (default: every member with a src/)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def strip_comments_and_strings(text: str) -> str:
    """Removes comments, string and char literals, keeping line structure."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            hashes = m.group(1)
            end = text.find('"' + hashes, i + len(m.group(0)))
            chunk = text[i:(n if end < 0 else end + 1 + len(hashes))]
            out.append("\n" * chunk.count("\n"))
            i += len(chunk)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append("\n" * text[i:j].count("\n"))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 12] if text[i + 1:i + 2] != "\\" else text[i:i + 12]):
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(text: str) -> str:
    """Cuts `#[cfg(test)] mod x { ... }` blocks and `#[cfg(test)] mod x;` declarations."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*([;{])", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        if m.group(3) == ";":
            i = m.end()
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def expand_use_tree(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> [`a::b`, `a::c::d`, `a::c::e`]."""
    tree = re.sub(r"\s+", "", tree)
    def expand(prefix: str, s: str) -> list[str]:
        brace = s.find("{")
        if brace < 0:
            return [prefix + s] if s else []
        head, body = s[:brace], s[brace + 1:s.rfind("}")]
        parts, depth, start = [], 0, 0
        for k, ch in enumerate(body):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(body[start:k])
                start = k + 1
        parts.append(body[start:])
        result = []
        for p in parts:
            result.extend(expand(prefix + head, p))
        return result
    return [re.sub(r"\bas\b.*$", "", p) for p in expand("", tree)]


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main") and len(parts) == 1:
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def crate_modules(src: Path) -> dict[tuple[str, ...], Path]:
    modules = {}
    for file in sorted(src.rglob("*.rs")):
        rel = file.relative_to(src)
        if file.name == "tests.rs" or "tests" in rel.parts[:-1]:
            continue
        modules[module_of(src, file)] = file
    return modules


def referenced_paths(code: str) -> list[str]:
    paths = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)(?:::|\b)[^;]*);", code):
        paths.extend(expand_use_tree(m.group(1)))
    for m in re.finditer(r"\b((?:crate|super)(?:::(?:super|[A-Za-z_]\w*))+)", code):
        paths.append(m.group(1))
    return paths


def resolve(path: str, here: tuple[str, ...], modules: dict) -> tuple[str, ...] | None:
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    elif parts[0] == "self":
        base, rest = here, parts[1:]
    else:
        base, rest = here, parts
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    target = base
    for part in rest:
        if part == "*" or part == "self":
            break
        if target + (part,) in modules:
            target = target + (part,)
        else:
            break
    return target


def edges_of(src: Path) -> dict[tuple, dict[tuple[str, str], list[str]]]:
    """parent module -> (from child, to child) -> the imports that make the edge."""
    modules = crate_modules(src)
    edges: dict[tuple, dict[tuple[str, str], list[str]]] = {}
    for here, file in modules.items():
        code = drop_test_modules(strip_comments_and_strings(file.read_text()))
        for path in referenced_paths(code):
            target = resolve(path, here, modules)
            if target is None:
                continue
            common = 0
            while common < min(len(here), len(target)) and here[common] == target[common]:
                common += 1
            if common == len(here) or common == len(target):
                continue  # one holds the other: a parent and its descendant
            parent = here[:common]
            key = (here[common], target[common])
            where = f"{file.relative_to(ROOT)}: {path}"
            edges.setdefault(parent, {}).setdefault(key, [])
            if where not in edges[parent][key]:
                edges[parent][key].append(where)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    sys.setrecursionlimit(10000)
    crates = [Path(a).resolve() for a in sys.argv[1:]] or sorted(
        p.parent for p in ROOT.glob("*/Cargo.toml") if (p.parent / "src").is_dir()
    )
    failed = False
    for crate in crates:
        src = crate / "src"
        found = 0
        for parent, pairs in sorted(edges_of(src).items()):
            graph: dict[str, set[str]] = {}
            for (a, b) in pairs:
                graph.setdefault(a, set()).add(b)
            for component in cycles(graph):
                found += 1
                name = "::".join(("crate",) + parent)
                print(f"FAIL {crate.name}: modules of {name} import each other: {' <-> '.join(component)}")
                for (a, b), wheres in sorted(pairs.items()):
                    if a in component and b in component:
                        for where in wheres[:3]:
                            print(f"       {a} -> {b}   {where}")
        if found:
            failed = True
        else:
            print(f"ok   {crate.name}: no module cycle")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
