#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu).
# It installs Python 3.11 or newer and, in a venv, the project's runtime packages exactly as
# requirements.lock pins them (the runtime group, hash-checked: no test or lint tools), then
# the project itself from its folder. The zip holds setup.sh, run_autograder, the project as
# seed-lb/ and, optionally, scores.toml (see docs/instructors.md).
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source/seed-lb"

new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

PYTHON=python3
if ! new_enough "$PYTHON"; then
  apt-get update -q
  apt-get install -y -q python3.11 python3.11-venv
  PYTHON=python3.11
elif ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
  apt-get update -q
  apt-get install -y -q python3-venv
fi
# The lock's runtime group with --require-hashes, as `make setup-runtime` installs it (uv,
# itself pinned in the lock, or pip where uv cannot run).
"$PYTHON" "$SRC/.ci/install.py" --venv "$ROOT/venv" runtime
# The project from its folder: a .pth line, no build step, nothing else from the index.
"$ROOT/venv/bin/python" -c 'import site, sys; print(sys.argv[2], file=open(
    site.getsitepackages()[0] + "/" + sys.argv[1], "w"))' seed-lb.pth "$SRC"
# Fail the build now rather than every submission later.
"$ROOT/venv/bin/python" -m infra grade --help > /dev/null
echo "seed-lb grader installed in $ROOT/venv"
