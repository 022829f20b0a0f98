import os
import sys

from infra.cli import main

code = main()
if code == 130:
    # Interrupted, and cleaned up. CPython would then exit by raising SIGINT on itself if a
    # KeyboardInterrupt had ever left an exec() of a string (dataclasses build their methods
    # so, on import), even one caught since: exit with the code main chose instead.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
