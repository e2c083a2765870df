#!/usr/bin/env python3
"""Checks that every relative link in the repository's Markdown files resolves.

A link to a file must name an existing file or folder; a link with an anchor (`#...`, or
`file.md#...`) must name a heading of that Markdown file, spelled as GitHub spells heading
anchors (lowercase, spaces to `-`, punctuation other than `-` and `_` dropped, a repeated
heading gets `-1`, `-2`, ...). Links inside code blocks and code spans are ignored.
Usage: scripts/check-doc-links.py (no arguments); exits 1 listing every broken link.
"""
import os
import re
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", "target", "corpus", "artifacts", "node_modules"}
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def markdown_files():
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(".md"):
                yield os.path.join(top, name)


def prose_lines(text):
    """(line number, line) outside fenced code blocks, with code spans blanked."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip()
        if fence is None and stripped[:3] in ("```", "~~~"):
            fence = stripped[:3]
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        yield number, line


def slug(heading):
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in " -" or category[0] in "LMN" or category == "Pc":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen, found = {}, set()
        with open(path, encoding="utf-8") as f:
            for _, line in prose_lines(f.read()):
                m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
                if not m:
                    continue
                base = slug(m.group(1))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else f"{base}-{n}")
        cache[path] = found
    return cache[path]


def main():
    broken = 0
    for path in markdown_files():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for number, line in prose_lines(text):
            line = re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)) if "](" not in m.group(0) else m.group(0), line)
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                    continue  # http:, https:, mailto:, ...
                file_part, _, anchor = target.partition("#")
                resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
                where = f"{os.path.relpath(path, ROOT)}:{number}: ({target})"
                if not os.path.exists(resolved):
                    print(f"{where} no such file {os.path.relpath(resolved, ROOT)}")
                    broken += 1
                elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                    print(f"{where} no heading #{anchor} in {os.path.relpath(resolved, ROOT)}")
                    broken += 1
    if broken:
        print(f"{broken} broken link(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
