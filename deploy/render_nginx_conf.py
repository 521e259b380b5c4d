#!/usr/bin/env python3
"""Write deploy/nginx.conf with its "# render: ..." lines filled in for a given set of workers.

    python3 deploy/render_nginx_conf.py --listen 80 \\
        --upstream 127.0.0.1:8081 --upstream 127.0.0.1:8082 \\
        --static-root /var/lib/matrixsrv/static > /etc/nginx/nginx.conf

``--runtime-dir DIR`` also puts nginx's pid file and temporary directories under DIR (an
unprivileged nginx, or several on one machine: the deployment test uses it). Standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf"
_MARKED = re.compile(r"^(?P<indent>\s*)(?P<line>.*?)\s*# render: (?P<what>\w+)\s*$")


def render(
    *,
    upstreams: list[str],
    listen: str,
    static_root: str,
    runtime_dir: str | None = None,
    template: str | None = None,
) -> str:
    """The configuration with the marked lines replaced; every marker must be present exactly once."""
    if not upstreams:
        raise ValueError("at least one upstream worker (host:port) is needed")
    text = template if template is not None else TEMPLATE.read_text()
    static_root = static_root.rstrip("/") + "/"
    seen: set[str] = set()
    out: list[str] = []
    for raw in text.splitlines():
        match = _MARKED.match(raw)
        if match is None:
            out.append(raw)
            continue
        indent, what = match["indent"], match["what"]
        if what in seen:
            raise ValueError(f"marker '# render: {what}' appears twice")
        seen.add(what)
        if what == "upstream":
            out.extend(f"{indent}server {u};" for u in upstreams)
        elif what == "listen":
            out.append(f"{indent}listen {listen};")
        elif what == "static":
            out.append(f"{indent}alias {static_root};")
        elif what == "main":
            if runtime_dir:
                out.append(f"{indent}pid {runtime_dir}/nginx.pid;")
        elif what == "http":
            if runtime_dir:
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
                    out.append(f"{indent}{kind}_temp_path {runtime_dir}/{kind}_temp;")
        else:
            raise ValueError(f"unknown marker '# render: {what}'")
    missing = {"upstream", "listen", "static", "main", "http"} - seen
    if missing:
        raise ValueError(f"markers missing from the template: {', '.join(sorted(missing))}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", action="append", required=True, help="a worker's host:port (repeat)")
    parser.add_argument("--listen", default="8080", help="nginx's listen address (default %(default)s)")
    parser.add_argument("--static-root", required=True, help="collectstatic's output (MATRIX_STATIC_ROOT)")
    parser.add_argument("--runtime-dir", help="pid file and temporary files here")
    args = parser.parse_args(argv)
    sys.stdout.write(render(upstreams=args.upstream, listen=args.listen, static_root=args.static_root,
                            runtime_dir=args.runtime_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
