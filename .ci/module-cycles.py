#!/usr/bin/env python3
"""Checks that the top-level modules of a Rust crate do not import each other in a cycle.

Usage: module-cycles.py [SRC_DIR]   (default: server/src)

A top-level module is `SRC_DIR/X.rs` (other than lib.rs and main.rs) or `SRC_DIR/X/mod.rs`;
every .rs file under `SRC_DIR/X/` belongs to module X. Module X uses module Y when any of its
files names a path that resolves to `crate::Y`: `crate::Y::…` (in `use` trees, including
grouped and multi-line `use crate::{…}`, or inline), `super::Y` where the `super`s climb to the
crate root (counting inline `mod … { }` blocks such as `mod tests`), or a name the crate root
imports from Y (`crate::Foo` after `use crate::y::Foo;` in lib.rs). Comments and string
literals are ignored; tests count like any other code.

Cycles between top-level modules make the crate impossible to split and its layers impossible
to reason about, so each cycle is reported with one `file:line` per edge and the exit status is
1. Without cycles the script prints the modules' layering (lowest first) and exits 0.
"""

import bisect
import os
import re
import sys
from collections import deque


# --- Lexing: blank out comments and string literals -----------------------------------------

def strip_comments_and_strings(text):
    """The text with comments and string/char literals replaced by spaces.

    Newlines are kept, so offsets and line numbers stay those of the original text.
    """
    out = list(text)
    n = len(text)

    def blank(start, end):
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = " "

    def is_ident_char(k):
        return 0 <= k < n and (text[k].isalnum() or text[k] == "_")

    i = 0
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2  # block comments nest in Rust
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif not is_ident_char(i - 1) and (c == "r" or (c in "bc" and text.startswith("r", i + 1))):
            # Possibly a raw string: r"…", r#"…"#, br"…", cr#"…"#.
            j = i + (2 if c in "bc" else 1)
            hashes = 0
            while j < n and text[j] == "#":
                hashes, j = hashes + 1, j + 1
            if j < n and text[j] == '"':
                end = text.find('"' + "#" * hashes, j + 1)
                end = n if end < 0 else end + 1 + hashes
                blank(i, end)
                i = end
            else:
                i += 1
        elif c == '"':  # also the tail of b"…" and c"…"
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}') or a lifetime/label ('a), left alone.
            if text.startswith("\\", i + 1):
                end = text.find("'", i + 3)
                end = n if end < 0 else end + 1
                blank(i, end)
                i = end
            elif i + 2 < n and text[i + 2] == "'":
                blank(i, i + 3)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


# --- Parsing paths ----------------------------------------------------------------------------

# What the scanner stops at: an inline module opening, a brace, or the start of a path that is
# relative to the crate root or to the current module.
SCAN = re.compile(
    r"(?P<mod>\bmod\s+(?:r\#)?(?P<name>[A-Za-z_]\w*)\s*\{)"
    r"|(?P<open>\{)|(?P<close>\})"
    r"|(?P<path>(?<![\w$])(?:\$crate|crate|super|self)(?=\s*::))"
)
SEGMENT = re.compile(r"\s*(\$crate|r\#[A-Za-z_]\w*|[A-Za-z_]\w*|\{|\*)")
SEPARATOR = re.compile(r"\s*::")
ALIAS = re.compile(r"\s+as\s+(?:r\#)?([A-Za-z_]\w*)")
GROUP_NEXT = re.compile(r"\s*(,|\})")
USE = re.compile(r"\buse\s+(?:::)?")


def walk_path(text, pos, base, leaves):
    """Follows the path or `use` tree starting at `pos`, relative to module path `base`.

    Appends `(absolute_segments, alias, offset)` to `leaves` for every path the tree ends in
    (`offset` is that of its last segment) and returns the offset just past the tree.
    """
    start = None  # offset of the last segment read
    while True:
        m = SEGMENT.match(text, pos)
        if not m:
            if start is not None:  # `crate::x::f::<T>()`: the path ends before the turbofish
                leaves.append((base, None, start))
            return pos
        token, start, pos = m.group(1), m.start(1), m.end()
        if token == "{":
            while True:
                pos = walk_path(text, pos, base, leaves)
                m = GROUP_NEXT.match(text, pos)
                if not m:
                    return pos  # not a well-formed group; give up on it
                pos = m.end()
                if m.group(1) == "}":
                    return pos
        if token == "*":
            leaves.append((base, None, start))
            return pos
        if token in ("crate", "$crate"):
            base = []
        elif token == "super":
            if not base:
                return pos  # above the crate root: not valid Rust
            base = base[:-1]
        elif token != "self":
            base = base + [token.removeprefix("r#")]
        m = SEPARATOR.match(text, pos)
        if m:
            pos = m.end()
            continue
        m = ALIAS.match(text, pos)
        alias = m.group(1) if m else (base[-1] if base else None)
        leaves.append((base, alias, start))
        return m.end() if m else pos


def paths_in(text, module_path):
    """Every `(absolute_segments, alias, offset)` path in `text` that starts with `crate`,
    `$crate`, `super` or `self`, for a file whose module path is `module_path`."""
    leaves = []
    depth, inline_mods = 0, []  # inline_mods: (brace depth, name) of enclosing `mod x { }`
    skip_until = 0
    for m in SCAN.finditer(text):
        if m.group("mod"):
            depth += 1
            inline_mods.append((depth, m.group("name")))
        elif m.group("open"):
            depth += 1
        elif m.group("close"):
            if inline_mods and inline_mods[-1][0] == depth:
                inline_mods.pop()
            depth -= 1
        elif m.start() >= skip_until:  # not a path nested in a use tree already walked
            base = module_path + [name for _, name in inline_mods]
            skip_until = walk_path(text, m.start(), base, leaves)
    return leaves


def root_imports(lib_text, modules):
    """Names the crate root brings into scope from a top-level module (`use crate::y::Foo;`,
    `pub use y::Foo as Bar;`): name -> module."""
    text = strip_comments_and_strings(lib_text)
    imports = {}
    depth = 0
    for m in re.finditer(r"\{|\}|" + USE.pattern, text):
        if m.group() == "{":
            depth += 1
        elif m.group() == "}":
            depth -= 1
        elif depth == 0:  # a `use` item of the root itself, not one inside a function body
            leaves = []
            walk_path(text, m.end(), [], leaves)
            for segments, alias, _ in leaves:
                if alias and segments and segments[0] in modules and alias not in modules:
                    imports[alias] = segments[0]
    return imports


# --- Collecting the graph ---------------------------------------------------------------------

def top_level_modules(src):
    """Top-level module name -> list of (file relative to src, module path of that file)."""
    modules = {}
    for entry in sorted(os.listdir(src)):
        full = os.path.join(src, entry)
        if entry.endswith(".rs") and os.path.isfile(full) and entry not in ("lib.rs", "main.rs"):
            modules.setdefault(entry[:-3], []).append((entry, [entry[:-3]]))
    for entry in sorted(os.listdir(src)):
        full = os.path.join(src, entry)
        if not os.path.isdir(full):
            continue
        if entry not in modules and not os.path.isfile(os.path.join(full, "mod.rs")):
            continue  # not a module (e.g. src/bin)
        for root, dirs, files in os.walk(full):
            dirs.sort()
            for name in sorted(files):
                if not name.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(root, name), src)
                parts = rel[:-3].split(os.sep)
                if parts[-1] == "mod":
                    parts.pop()
                modules.setdefault(entry, []).append((rel, parts))
    return modules


def collect_edges(src, modules):
    """(from, to) -> list of (file, line) where module `from` names module `to`."""
    lib = os.path.join(src, "lib.rs")
    aliases = {}
    if os.path.isfile(lib):
        with open(lib, encoding="utf-8") as f:
            aliases = root_imports(f.read(), modules)
    edges = {}
    for module, files in modules.items():
        for rel, module_path in files:
            with open(os.path.join(src, rel), encoding="utf-8") as f:
                text = strip_comments_and_strings(f.read())
            line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
            for segments, _, offset in paths_in(text, module_path):
                if not segments:
                    continue  # the crate root itself, e.g. `use crate::*`
                target = segments[0] if segments[0] in modules else aliases.get(segments[0])
                if target and target != module:
                    line = bisect.bisect_right(line_starts, offset)
                    edges.setdefault((module, target), []).append((os.path.join(src, rel), line))
    return edges


# --- Graph algorithms -------------------------------------------------------------------------

def strongly_connected_components(nodes, graph):
    """Tarjan's algorithm; components as sorted lists."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return components


def shortest_path(graph, start, goal, allowed):
    """Shortest list of nodes from start to goal staying within `allowed`."""
    previous, queue = {start: None}, deque([start])
    while queue:
        v = queue.popleft()
        if v == goal:
            path = []
            while v is not None:
                path.append(v)
                v = previous[v]
            return path[::-1]
        for w in graph[v]:
            if w in allowed and w not in previous:
                previous[w] = v
                queue.append(w)
    return None


def covering_cycles(component, graph):
    """Shortest cycles through the component's edges until every edge is on one printed cycle:
    breaking the cycles means removing (or reversing) some of exactly these edges."""
    members, covered, cycles = set(component), set(), []
    for u in component:
        for v in graph[u]:
            if v in members and (u, v) not in covered:
                cycle = [u] + shortest_path(graph, v, u, members)
                covered.update(zip(cycle, cycle[1:]))
                cycles.append(cycle)
    return cycles


def layers(nodes, graph):
    """Modules by layer: a module's layer is one above the highest layer it uses."""
    level = {}

    def depth(v):
        if v not in level:
            level[v] = 1 + max((depth(w) for w in graph[v]), default=-1)
        return level[v]

    result = {}
    for v in nodes:
        result.setdefault(depth(v), []).append(v)
    return [sorted(result[k]) for k in sorted(result)]


# --- Main -------------------------------------------------------------------------------------

def crate_name(src):
    """The package name from the Cargo.toml next to src, else the directory's name."""
    parent = os.path.dirname(os.path.abspath(src))
    try:
        with open(os.path.join(parent, "Cargo.toml"), encoding="utf-8") as f:
            manifest = f.read()
        m = re.search(r'^\[package\][^\[]*?^name\s*=\s*"([^"]+)"', manifest, re.M | re.S)
        if m:
            return m.group(1)
    except OSError:
        pass
    return os.path.basename(parent)


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src = argv[1] if len(argv) == 2 else "server/src"
    if not os.path.isdir(src):
        print(f"module-cycles: {src} is not a directory", file=sys.stderr)
        return 2
    name = crate_name(src)
    modules = top_level_modules(src)
    edges = collect_edges(src, modules)
    nodes = sorted(modules)
    graph = {v: sorted(w for (u, w) in edges if u == v) for v in nodes}

    components = [c for c in strongly_connected_components(nodes, graph) if len(c) > 1]
    if not components:
        print(f"{name}: {len(nodes)} top-level modules, no import cycles")
        print("layering, lowest first (each module uses only modules on earlier lines):")
        for number, layer in enumerate(layers(nodes, graph)):
            print(f"  {number}: {', '.join(layer)}")
        return 0

    def report(message):
        print(message, file=sys.stderr)

    cyclic = sum(len(c) for c in components)
    report(f"{name}: {cyclic} of {len(nodes)} top-level modules are in import cycles")
    for component in sorted(components):
        report(f"\nmodules that all reach each other: {', '.join(component)}")
        for cycle in covering_cycles(component, graph):
            report(f"import cycle between top-level modules: {' -> '.join(cycle)}")
            for u, v in zip(cycle, cycle[1:]):
                sites = edges[(u, v)]
                file, line = sites[0]
                more = f" (+{len(sites) - 1} more)" if len(sites) > 1 else ""
                report(f"    {u} -> {v}: {file}:{line}{more}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
