#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a cycle (`make lint` runs it).

Nodes are sibling modules: the top-level modules of each crate, and the children of every
folder module. An edge A -> B means code in A (any file below it, tests left out) names
B by path: `crate::B…` for top-level siblings, `super::B…` or `crate::<parent>::B…` for
children. A folder's own `mod.rs` (or `<name>.rs`) is the parent, not a sibling: a parent
re-exporting its children and children using their parent's items is how a module folder
works, so those edges are not counted.

Why a script: cargo-modules (`dependencies --acyclic`) does this from rust-analyzer's
model, but it builds rust-analyzer's crates, about ten minutes on two cores, for a check
that reading paths answers. This reads paths only: a glob import of a sibling
(`use super::x::*`) still counts, a path built by a macro does not.

    hack/module-cycles.py CRATE_SRC_DIR...   e.g. operator/src worker/src
    hack/module-cycles.py --self-test        the check finds the cycles it must find
"""
import os
import re
import sys

CFG_TEST = re.compile(r"^#\[cfg\(test\)\]\s*\n(pub(\([a-z]+\))? )?mod \w+ \{.*", re.M | re.S)
USE_GROUP = re.compile(r"\b(crate|super)::((?:\w+::)*)\{")
PATH = re.compile(r"\b(crate|super)::((?:\w+::)*\w+)")


def source(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Inline test modules sit at the end of a file by convention; cut from there.
    text = CFG_TEST.sub("", text)
    return re.sub(r"//[^\n]*", "", text)


def braces(text, start):
    """The text inside the brace group opening at text[start - 1]."""
    depth, i = 1, start
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start : i - 1]


def group_items(inner):
    """Top-level names in a `{a, b::c, d::{e}}` group."""
    names, depth, current = [], 0, ""
    for ch in inner + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            if current.strip():
                names.append(current.strip().split("::")[0].split(" ")[0])
            current = ""
        else:
            current += ch
    return names


def paths(text):
    """Every (root, [segments]) a file names: crate::a::b, super::c, and use groups."""
    for m in PATH.finditer(text):
        yield m.group(1), m.group(2).split("::")
    for m in USE_GROUP.finditer(text):
        prefix = [s for s in m.group(2).split("::") if s]
        for name in group_items(braces(text, m.end())):
            yield m.group(1), prefix + [name]


def parent_folder(path):
    """The folder of the module that `super::` means in `path` (`x/mod.rs` is module x)."""
    here = os.path.dirname(path)
    return os.path.dirname(here) if os.path.basename(path) == "mod.rs" else here


def modules(folder):
    """Child modules of a folder: name -> (files below it, its own folder or None)."""
    out = {}
    for entry in sorted(os.listdir(folder)):
        full = os.path.join(folder, entry)
        if entry in ("lib.rs", "main.rs", "mod.rs", "bin", "tests.rs", "test_fixtures.rs"):
            continue
        if entry.endswith(".rs"):
            name = entry[:-3]
            out.setdefault(name, [[], None])[0].append(full)
        elif os.path.isdir(full):
            out.setdefault(entry, [[], None])[1] = full
    for name, (files, sub) in out.items():
        if sub:
            for root, _, names in os.walk(sub):
                files += [os.path.join(root, n) for n in names if n.endswith(".rs") and n != "tests.rs"]
    return out


def cycle(edges):
    """One cycle in the graph as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def check(folder, crate_path, top):
    """Checks the siblings in `folder` (crate path `crate_path`), then each folder module."""
    mods = modules(folder)
    edges = {}
    for name, (files, _) in mods.items():
        for path in files:
            for root, segs in paths(source(path)):
                if top and root == "crate":
                    target = segs[0]
                elif not top and root == "crate" and segs[: len(crate_path)] == crate_path:
                    target = segs[len(crate_path)] if len(segs) > len(crate_path) else None
                elif not top and root == "super" and parent_folder(path) == folder:
                    target = segs[0]
                else:
                    continue
                if target in mods and target != name:
                    edges.setdefault(name, set()).add(target)
    problems = []
    found = cycle(edges)
    if found:
        where = "::".join(["crate"] + crate_path)
        problems.append(f"{folder}: modules of {where} import each other in a cycle: {' -> '.join(found)}")
    for name, (_, sub) in mods.items():
        if sub:
            problems += check(sub, crate_path + [name], False)
    return problems


def self_test():
    """Small crates on disk: each cycle kind is found, and the acyclic shapes pass."""
    import tempfile

    def crate(files):
        root = tempfile.mkdtemp(prefix="module-cycles-")
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(text)
        return check(root, [], True)

    cases = [
        ("top-level use", {"a.rs": "use crate::b::X;", "b.rs": "use crate::a::Y;"}, True),
        ("use group", {"a.rs": "use crate::{b::X, c};", "b.rs": "fn f() { crate::a::g() }", "c.rs": ""}, True),
        ("folder siblings", {"f/mod.rs": "mod x; mod y;", "f/x.rs": "use super::y::Y;", "f/y.rs": "use crate::f::x::X;"}, True),
        ("folder's mod.rs and a sibling", {"f/mod.rs": "mod x; mod y;", "f/x/mod.rs": "use super::y::Y;", "f/y.rs": "use super::x::X;"}, True),
        ("three-step", {"a.rs": "use crate::b::B;", "b.rs": "use crate::c::C;", "c.rs": "use crate::a::A;"}, True),
        ("tree", {"a.rs": "use crate::{b::B, c::C};", "b.rs": "use crate::c::C;", "c.rs": ""}, False),
        ("parent and child", {"f/mod.rs": "pub use x::X; mod x;", "f/x.rs": "use super::Shared;"}, False),
        ("tests left out", {"a.rs": "use crate::b::B;", "b.rs": "#[cfg(test)]\nmod tests {\n use crate::a::A;\n}\n"}, False),
        ("comments left out", {"a.rs": "use crate::b::B;", "b.rs": "// see crate::a::A"}, False),
    ]
    failed = 0
    for name, files, want in cases:
        got = bool(crate(files))
        if got != want:
            failed += 1
            print(f"self-test {name!r}: expected {'a cycle' if want else 'no cycle'}, got the opposite", file=sys.stderr)
    if failed:
        sys.exit(f"module-cycles self-test: {failed} of {len(cases)} cases wrong")
    print(f"module-cycles self-test: {len(cases)} cases right")


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    problems = []
    for src in sys.argv[1:]:
        problems += check(src.rstrip("/"), [], True)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit("break each cycle: move what both sides need into a module both import")
    print(f"module-cycles: no import cycle in {', '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
