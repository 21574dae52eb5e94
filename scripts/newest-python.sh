#!/usr/bin/env bash
# Prints the path of the newest CPython (>= 3.11, the lowest pyproject admits) this machine
# has: versioned interpreters on PATH, then pyenv's versions. Prints nothing when there is none.
# `make test` runs the unit and demo tests on it as well as on python3.
set -u
candidates=()
for minor in 20 19 18 17 16 15 14 13 12 11; do
  if path=$(command -v "python3.$minor" 2>/dev/null); then candidates+=("$path"); fi
done
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for path in "$root"/versions/3.*/bin/python3; do
  [ -x "$path" ] && candidates+=("$path")
done
best=""; best_version=0
for path in "${candidates[@]}"; do
  # A pyenv shim of a version that is not selected fails here and is skipped.
  version=$("$path" -c 'import sys; print(sys.version_info[0] * 100 + sys.version_info[1])' \
            2>/dev/null) || continue
  if [ "$version" -ge 311 ] && [ "$version" -gt "$best_version" ]; then
    best=$path; best_version=$version
  fi
done
[ -n "$best" ] && echo "$best"
exit 0
