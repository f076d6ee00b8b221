#!/usr/bin/env bash
# System packages the project needs: Java 17 (TorchServe's frontend), ab (benchmarks), jemalloc (the
# benchmark's allocator cells), haproxy (the gateway of make test-scale and make validate-k8s) and,
# where the system Python is older than 3.10 (Amazon Linux 2023 ships 3.9), a newer Python.
# Debian/Ubuntu (x86_64 or arm64) through apt; Amazon Linux 2023 / Fedora-likes through dnf.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1; then
  manager=apt java_pkg=openjdk-17-jre-headless ab_pkg=apache2-utils python_pkg=python3 jemalloc_pkg=libjemalloc2
elif command -v dnf >/dev/null 2>&1; then
  # Amazon Linux 2023 (the usual Graviton AMI): Corretto 17, httpd-tools for ab, python3.11.
  manager=dnf java_pkg=java-17-amazon-corretto-headless ab_pkg=httpd-tools python_pkg=python3.11 jemalloc_pkg=jemalloc
else
  echo "neither apt-get nor dnf found: install Java 17, ab, haproxy and Python >= 3.10 yourself" >&2
  exit 1
fi
missing=()
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
[ "${java_major:-0}" -ge 17 ] 2>/dev/null || missing+=("$java_pkg")
command -v ab >/dev/null 2>&1 || missing+=("$ab_pkg")
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)   # same package name on Debian and Amazon Linux
[ -e /usr/lib/"$(uname -m)"-linux-gnu/libjemalloc.so.2 ] || [ -e /usr/lib64/libjemalloc.so.2 ] || missing+=("$jemalloc_pkg")
scripts/find_python.sh >/dev/null 2>&1 || missing+=("$python_pkg")
sudo=()
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo=(sudo)
# Test material, best effort: the Python 3.11 docs (real Sphinx pages for tests/test_structure.py and
# make eval-pydocs); where the distribution lacks the package those tests skip and say why.
if [ "$manager" = apt ] && [ ! -d /usr/share/doc/python3.11/html ]; then
  { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-doc >/dev/null; } \
    || echo "python3.11-doc not installed: the tests on real Sphinx pages will skip" >&2
fi
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "missing: ${missing[*]}; install them as root ($manager)" >&2; exit 1; }
  sudo=(sudo)
fi
echo "installing with $manager: ${missing[*]}"
if [ "$manager" = apt ]; then
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  "${sudo[@]}" dnf install -y -q "${missing[@]}"
fi
