#!/usr/bin/env python3
"""Fails when a crate of the workspace depends on one of ours outside the allowed set (issue 11).

The layering (ARCHITECTURE.md): storage -> none of ours; io -> storage; query -> storage, io; client -> none of ours;
server -> query, client; journey -> client; tools -> any but benches; benches, tests -> any. Only normal
and build dependencies count: a crate's tests may use any crate of ours.
"""
import json
import subprocess
import sys

ALLOWED = {
    "journeydb-storage": set(),
    "journeydb-io": {"journeydb-storage"},
    "journeydb-query": {"journeydb-storage", "journeydb-io"},
    "journeydb-client": set(),
    "journeydb-server": {"journeydb-query", "journeydb-client"},
    "journeydb-journey": {"journeydb-client"},
}
ANY = {"journeydb", "journeydb-benches", "journeydb-tests"}
# Edges no crate may have even where "any" is allowed: the shipped binary never links the benchmarks.
FORBIDDEN = {"journeydb": {"journeydb-benches"}}

meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
ours = {p["name"] for p in meta["packages"]}
bad = []
for p in meta["packages"]:
    name = p["name"]
    if name not in ALLOWED and name not in ANY:
        bad.append(f"{name}: a new crate; add it to scripts/layering.py and ARCHITECTURE.md")
        continue
    if name in ANY:
        for d in p["dependencies"]:
            if d.get("kind") in (None, "build") and d["name"] in FORBIDDEN.get(name, set()):
                bad.append(f"{name} -> {d['name']} (forbidden)")
        continue
    for d in p["dependencies"]:
        if d["name"] in ours and d.get("kind") in (None, "build") and d["name"] not in ALLOWED[name]:
            bad.append(f"{name} -> {d['name']} (allowed: {sorted(ALLOWED[name]) or 'none of ours'})")
if bad:
    print("layering violated:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
print(f"layering ok: {len(ours)} crates")
