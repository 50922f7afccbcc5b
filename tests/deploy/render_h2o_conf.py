#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Render etc/h2o/l3kv.conf.in: replace every @NAME@ with a value.

    render_h2o_conf.py [--template PATH] [--output PATH] [NAME=VALUE ...]

Without NAME=VALUE arguments the defaults below are used, which give exactly the shipped
etc/h2o/l3kv.conf. USER= (empty) removes the `user:` line, for an h2o that does not
start as root. Every @NAME@ left in the template without a value is an error, so a new
placeholder cannot slip through unrendered. Used by tests/deploy/test_h2o_proxy.py."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "..", "..", "etc", "h2o", "l3kv.conf.in")

DEFAULTS = {
    "LISTEN_PORT": "80",
    "LISTEN_HOST": "0.0.0.0",
    "BACKEND_URL": "http://127.0.0.1:8080/",
    "LIMIT_REQUEST_BODY": str(64 * 1024 * 1024 + 1024 * 1024),
    "ACCESS_LOG": "/var/log/h2o/l3kv-access.log",
    "ERROR_LOG": "/var/log/h2o/l3kv-error.log",
    "USER": "debian-h2o",
}

PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def render(text, values=None):
    """Return the template text with the placeholders replaced (defaults for the rest)."""
    vals = dict(DEFAULTS)
    vals.update(values or {})
    if vals.get("USER", "") == "":
        text = re.sub(r"(?m)^user: @USER@\n", "", text)
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(vals))
    if missing:
        raise ValueError("no value for " + ", ".join(missing))
    return PLACEHOLDER.sub(lambda m: vals[m.group(1)], text)


def render_file(values=None, template=TEMPLATE):
    with open(template) as f:
        return render(f.read(), values)


def write_rendered(prog, make_text, output=None):
    """Write what make_text() returns to the file `output` (standard output without one) and
    return 0; an OSError or ValueError of make_text() is reported as `prog: ...` and gives 1.
    The command-line end of this renderer and of render_haproxy_cfg.py."""
    try:
        text = make_text()
    except (OSError, ValueError) as e:
        sys.stderr.write("%s: %s\n" % (prog, e))
        return 1
    if output:
        with open(output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def main(argv):
    template, output, values = TEMPLATE, None, {}
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("--template", "--output") and args:
            if a == "--template":
                template = args.pop(0)
            else:
                output = args.pop(0)
        elif "=" in a and not a.startswith("-"):
            k, v = a.split("=", 1)
            values[k] = v
        else:
            sys.stderr.write(__doc__)
            return 2
    return write_rendered("render_h2o_conf", lambda: render_file(values, template), output)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
