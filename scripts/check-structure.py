#!/usr/bin/env python3
"""The shape docs/testing.md promises for src/: no import cycle between files, no source
file over 500 lines (test files aside), and the WebSocket component never reaching back
into the proxy. Reads the sources as text; exits 1 listing every breach."""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_LINES = 500


def is_test(path):
    return path.endswith("tests.rs") or "/tests/" in path


def sources():
    files = {}
    for root, _, names in os.walk(SRC):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.relpath(os.path.join(root, name), SRC)
                with open(os.path.join(root, name)) as f:
                    files[path] = f.read()
    return files


def file_of(files, parts):
    """The file a module path (`a::b::c`, from the crate root) lives in: its longest prefix."""
    for n in range(len(parts), 0, -1):
        base = "/".join(parts[:n])
        for cand in (base + ".rs", base + "/mod.rs"):
            if cand in files:
                return cand
    return None


def module_of(path):
    parts = path[:-3].split("/")
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def edges(files):
    out = {f: set() for f in files}
    for f, text in files.items():
        if is_test(f):
            continue
        text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
        here = module_of(f)
        refs = [m.split("::") for m in re.findall(r"\bcrate::((?:\w+::)*\w+)", text)]
        for prefix, group in re.findall(r"\bsuper::((?:\w+::)*)\{([^}]*)\}", text):
            refs += [(here[:-1] + (prefix + item.strip().split(" ")[0]).split("::")) for item in group.split(",") if item.strip()]
        refs += [here[:-1] + m.split("::") for m in re.findall(r"\bsuper::((?:\w+::)*\w+)", text)]
        for child in re.findall(r"^\s*(?:pub(?:\([a-z]+\))? )?mod (\w+);", text, flags=re.M):
            if child != "tests" and re.search(r"(?<![:\w])" + child + r"::", text):
                refs.append(here + [child])
        for parts in refs:
            target = file_of(files, [p for p in parts if p])
            if target and target != f and not is_test(target):
                out[f].add(target)
    return out


def cycles(graph):
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif not state.get(nxt):
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node)
    return found


def main():
    files = sources()
    problems = []
    for cycle in cycles(edges(files)):
        problems.append("import cycle: " + " -> ".join("src/" + c for c in cycle))
    for path, text in sorted(files.items()):
        lines = text.count("\n")
        if not is_test(path) and lines > MAX_LINES:
            problems.append(f"src/{path}: {lines} lines (over {MAX_LINES})")
        if path.startswith("websocket/") and "crate::proxy" in text:
            problems.append(f"src/{path}: the WebSocket component imports crate::proxy")
    for p in problems:
        print(p)
    print(f"check-structure: {len(files)} files, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
