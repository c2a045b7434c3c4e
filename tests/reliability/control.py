"""The control process of a reliability cluster (see cluster.py): one Django process, many calls.

Reads one JSON request per line on stdin, `{"func": "module.function", "args": [...], "kwargs": {...}}`,
calls it, and answers on stdout with a line `@@ctl {"result": ...}` or `@@ctl {"error": "traceback"}`.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback


def main() -> None:
    import django

    django.setup()
    from django.db import close_old_connections

    out = sys.stdout
    sys.stdout = sys.stderr  # anything the called code prints must not be read as a reply
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        close_old_connections()
        try:
            module, _, name = request["func"].rpartition(".")
            result = getattr(importlib.import_module(module), name)(*request.get("args", []), **request.get("kwargs", {}))
            reply = {"result": result}
        except Exception:
            reply = {"error": traceback.format_exc()}
        finally:
            close_old_connections()
        out.write("@@ctl " + json.dumps(reply, default=str) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
