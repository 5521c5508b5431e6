#!/usr/bin/env python3
"""Lists functions longer than a limit (default 100 lines) in the workspace's Rust sources, unless the
line before them (or their doc comment) carries a `// long:` reason. Issue 11: no function over ~100
lines without a reason written next to it. Exits non-zero when one is found.
  scripts/long_functions.py [LIMIT]"""
import pathlib
import re
import sys

LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 100
FN = re.compile(r"^(\s*)(pub(\([^)]*\))? )?(async )?(unsafe )?(const )?fn (\w+)")
bad = []
root = pathlib.Path(__file__).resolve().parent.parent
for path in sorted(root.glob("*/src/**/*.rs")):
    if "target" in path.parts:
        continue
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent = m.group(1)
        close = indent + "}"
        j = i + 1
        while j < len(lines) and lines[j] != close:
            j += 1
        length = j - i + 1
        if length <= LIMIT:
            continue
        k = i - 1
        reason = False
        while k >= 0 and (lines[k].strip().startswith("//") or lines[k].strip().startswith("#[")):
            if "// long:" in lines[k]:
                reason = True
            k -= 1
        if not reason:
            bad.append(f"{path.relative_to(root)}:{i + 1}: fn {m.group(7)} is {length} lines")
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
