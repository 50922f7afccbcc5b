#!/usr/bin/env python3
"""Check that the files of each library in src/ call each other without cycles.

For every object file of a library (build/src/<lib>/lib*.a.p/*.o) the symbols it defines
and the ones it uses are read with `nm`; file A depends on file B when A uses a symbol B
defines. A strongly connected component of more than one file is a cycle: two files that
cannot be read, tested or replaced one without the other. Prints each cycle with the
symbols that close it and exits 1; exits 0 when there is none.

Usage: tools/check-cycles.py [BUILD_DIR]   (default: build)
"""
import glob
import os
import subprocess
import sys


def symbols(obj):
    out = subprocess.run(["nm", "--defined-only", "-g", obj], capture_output=True, text=True, check=True).stdout
    defined = {line.split()[-1] for line in out.splitlines() if line.strip()}
    out = subprocess.run(["nm", "--undefined-only", obj], capture_output=True, text=True, check=True).stdout
    used = {line.split()[-1] for line in out.splitlines() if line.strip()}
    return defined, used


def sccs(nodes, edges):
    """Tarjan's algorithm, iterative; returns the components with more than one node."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    libs = sorted(glob.glob(os.path.join(build, "src", "*", "lib*.a.p")))
    if not libs:
        print(f"check-cycles: no libraries under {build}/src (build first)", file=sys.stderr)
        return 2
    bad = 0
    for lib in libs:
        objs = sorted(glob.glob(os.path.join(lib, "*.o")))
        info = {os.path.basename(o).split(".c.o")[0]: symbols(o) for o in objs}
        owner = {s: name for name, (d, _) in info.items() for s in d}
        edges = {name: set() for name in info}
        why = {}
        for name, (_, used) in info.items():
            for s in used:
                o = owner.get(s)
                if o is not None and o != name:
                    edges[name].add(o)
                    why.setdefault((name, o), s)
        for comp in sccs(sorted(info), edges):
            bad = 1
            links = [f"{a} -> {b} ({why[(a, b)]})" for a in comp for b in sorted(edges[a]) if b in comp]
            print(f"check-cycles: {os.path.basename(lib)}: files call each other in a cycle: {', '.join(links)}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
