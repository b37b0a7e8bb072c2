#!/usr/bin/env python3
"""The layering rule of tickerd's source tree, checked from the #include lines.

The folders under src/ (and include/) are the layers, lowest first in LAYERS.
A file may include:
  * a header of its own folder by its bare name ("hub_topic.h"): a private
    header sits beside its sources;
  * "layer/name.h" of its own layer or of a layer below it, from include/
    (headers that cross layers) -- or from src/ when it is its own layer's.
Anything else is an upward or sideways edge and fails the check. Quoted
names that exist nowhere in the tree (llhttp.h) are system headers.

Usage: check_layers.py [ROOT]   (exit 1 and one line per violation)
"""
import os
import re
import sys

LAYERS = ["base", "net", "http", "redis", "upstream", "market", "stream", "app"]
RANK = {name: i for i, name in enumerate(LAYERS)}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_files(root):
    for top in ("src", "include"):
        base = os.path.join(root, top)
        if not os.path.isdir(base):
            continue
        for dirpath, _, names in os.walk(base):
            for n in sorted(names):
                if n.endswith((".c", ".h")):
                    yield top, os.path.relpath(os.path.join(dirpath, n), root)


def check(root):
    problems = []
    files = list(layer_files(root))
    known = {os.path.basename(p) for _, p in files}
    for top, path in files:
        parts = path.split(os.sep)
        if len(parts) != 3 or parts[1] not in RANK:
            problems.append(f"{path}: not in a layer folder ({', '.join(LAYERS)})")
            continue
        here = parts[1]
        text = open(os.path.join(root, path), encoding="utf-8").read()
        for lineno, line in enumerate(text.splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            inc = m.group(1)
            where = f"{path}:{lineno}: #include \"{inc}\""
            if "/" not in inc:
                if os.path.exists(os.path.join(root, os.path.dirname(path), inc)):
                    continue
                if inc in known:
                    problems.append(f"{where}: another folder's header by its bare name; write \"layer/{inc}\"")
                continue  # a system header in quotes
            target, _, name = inc.partition("/")
            if target not in RANK or "/" in name:
                problems.append(f"{where}: not a layer path")
                continue
            public = os.path.exists(os.path.join(root, "include", target, name))
            private = os.path.exists(os.path.join(root, "src", target, name))
            if not public and not private:
                problems.append(f"{where}: no such file")
            elif RANK[target] > RANK[here]:
                problems.append(f"{where}: upward ({here} may include only {', '.join(LAYERS[:RANK[here] + 1])})")
            elif not public and target != here:
                problems.append(f"{where}: private to {target}")
    return problems


if __name__ == "__main__":
    found = check(sys.argv[1] if len(sys.argv) > 1 else ".")
    for p in found:
        print(p)
    if found:
        print(f"check_layers: {len(found)} violation(s)", file=sys.stderr)
        sys.exit(1)
    print("check_layers: every #include points down or sideways within its layer")
