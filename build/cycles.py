#!/usr/bin/env python3
"""Lists the dependency cycles between runtime/ files (docs/architecture.md).

Two graphs, file to file:
  include: runtime file X includes runtime file Y (files, so a cycle is
           headers that include each other)
  call:    X.o uses a function or variable that Y.o defines (from `nm` of the
           objects in the build tree, build/out by default; skipped when the
           objects are not there)
Prints each graph's cycles (strongly connected components of more than one
module) and exits 1 when there is one. --dot prints the include graph in
Graphviz form instead.
    python3 build/cycles.py [--dot] [BUILD_DIR]
"""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RT = os.path.join(ROOT, "runtime")


def include_graph():
    g = {}
    for p in sorted(glob.glob(os.path.join(RT, "*.[ch]"))):
        m = os.path.basename(p)
        g.setdefault(m, set())
        with open(p, encoding="utf-8", errors="replace") as f:
            for line in f:
                hit = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if hit and os.path.exists(os.path.join(RT, hit.group(1))):
                    g[m].add(hit.group(1))
    return g


def call_graph(build):
    objs = sorted(glob.glob(os.path.join(build, "CMakeFiles", "gptccore.dir", "runtime", "*.c.o")))
    if not objs:
        return None
    defined, used = {}, {}
    for o in objs:
        m = os.path.basename(o)[: -len(".c.o")]
        out = subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout
        used[m] = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDBR":
                defined[parts[2]] = m
            elif len(parts) == 2 and parts[0] == "U":
                used[m].add(parts[1])
    return {m: {defined[s] for s in syms if s in defined and defined[s] != m} for m, syms in used.items()}


def cycles(g):
    """Tarjan's strongly connected components of size > 1."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    args = sys.argv[1:]
    dot = "--dot" in args
    args = [a for a in args if a != "--dot"]
    inc = include_graph()
    if dot:
        print("digraph runtime {")
        for m in sorted(inc):
            for d in sorted(inc[m]):
                print(f'  "{m}" -> "{d}";')
        print("}")
        return 0
    bad = 0
    for name, g in (("include", inc), ("call", call_graph(args[0] if args else os.path.join(ROOT, "build", "out")))):
        if g is None:
            print(f"{name}: no objects in the build tree (build first); not checked")
            continue
        cyc = cycles(g)
        edges = sum(len(v) for v in g.values())
        print(f"{name}: {len(g)} {'files' if name == 'include' else 'modules'}, {edges} edges, {len(cyc)} cycles")
        for c in cyc:
            print("  cycle: " + " <-> ".join(c))
        bad |= bool(cyc)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
