#!/usr/bin/env bash
# Print the first Python >= 3.10 on PATH (the project's floor) and say on stderr which one it is.
# PYTHON=/path/to/python overrides the search. Amazon Linux 2023's python3 is 3.9: there
# scripts/install_system.sh installs python3.11 from dnf, which this then finds.
set -euo pipefail
for candidate in ${PYTHON:-} python3 python3.12 python3.11 python3.10; do
  command -v "$candidate" >/dev/null 2>&1 || continue
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "python: $(command -v "$candidate") ($("$candidate" -V 2>&1))" >&2
    command -v "$candidate"
    exit 0
  fi
done
echo "no Python >= 3.10 found (tried: ${PYTHON:-} python3 python3.12 python3.11 python3.10);" \
     "install one (Amazon Linux 2023: sudo dnf install -y python3.11) or set PYTHON=/path/to/python" >&2
exit 1
