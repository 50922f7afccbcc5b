#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Render etc/haproxy/l3kv.cfg for other addresses: the `bind` line of the frontend and the
server list between `# BEGIN SERVERS` and `# END SERVERS` are replaced, everything else is
kept as shipped.

    render_haproxy_cfg.py [--output PATH] BIND NAME=ID=HOST:PORT ...

e.g. `render_haproxy_cfg.py 127.0.0.1:18080 node1=1=127.0.0.1:18081 node2=2=127.0.0.1:18082`.
Used by tests/deploy/test_haproxy_shard.py."""
import os
import re
import sys

from render_h2o_conf import write_rendered

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(HERE, "..", "..", "etc", "haproxy", "l3kv.cfg")

SERVERS = re.compile(r"(?ms)^(\s*)# BEGIN SERVERS\n.*?^\s*# END SERVERS\n")
BIND = re.compile(r"(?m)^(\s*)bind \S+")


def render(text, bind, servers):
    """servers: list of (name, id, "host:port")."""
    if not SERVERS.search(text) or len(BIND.findall(text)) != 1:
        raise ValueError("the configuration lacks the server markers or one bind line")
    text = BIND.sub(lambda m: m.group(1) + "bind " + bind, text)

    def block(m):
        ind = m.group(1)
        lines = [ind + "# BEGIN SERVERS"]
        lines += ["%sserver %s %s id %d" % (ind, n, a, int(i)) for n, i, a in servers]
        lines.append(ind + "# END SERVERS")
        return "\n".join(lines) + "\n"

    return SERVERS.sub(block, text)


def render_file(bind, servers, path=SHIPPED):
    with open(path) as f:
        return render(f.read(), bind, servers)


def main(argv):
    args = list(argv)
    output = None
    if len(args) >= 2 and args[0] == "--output":
        output = args[1]
        args = args[2:]
    if len(args) < 2:
        sys.stderr.write(__doc__)
        return 2

    def make_text():
        servers = [tuple(a.split("=", 2)) for a in args[1:]]
        if any(len(s) != 3 for s in servers):
            raise ValueError("a server is NAME=ID=HOST:PORT")
        return render_file(args[0], servers)

    return write_rendered("render_haproxy_cfg", make_text, output)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
