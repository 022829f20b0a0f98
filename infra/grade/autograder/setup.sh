#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu).
# It installs Python 3.11 or newer and, in a venv, the project with its pinned runtime
# packages only (no test or lint tools). The zip holds setup.sh, run_autograder, the
# project as seed-lb/ and, optionally, scores.toml (see docs/instructors.md).
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source/seed-lb"
LOCK="$SRC/requirements-runtime.lock"

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
"$PYTHON" -m venv "$ROOT/venv"
PIP=("$ROOT/venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir)
"${PIP[@]}" -r "$LOCK"
"${PIP[@]}" --no-deps "$SRC"
# Fail the build now rather than every submission later.
"$ROOT/venv/bin/python" -m infra grade --help > /dev/null
echo "seed-lb grader installed in $ROOT/venv"
