#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian's yosys (when run as root), then a virtual
# environment in .venv with fastml and its pinned dependencies. Re-running is cheap: pip runs
# again only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian tools: yosys (open-source resource estimates), ghdl (simulates VHDL: da4ml and conifer's
# VHDL projects, and the VHDL testbench of firmware/tb/), iverilog (Icarus Verilog: runs the Verilog
# testbench of firmware/tb/ in the tests) and chromium (headless: the tests open report.html in a real
# browser, offline). Without them the checks they serve report "not run" or skip, never "pass".
missing=""
command -v yosys >/dev/null 2>&1 || missing="$missing yosys"
command -v ghdl >/dev/null 2>&1 || missing="$missing ghdl"
command -v iverilog >/dev/null 2>&1 || missing="$missing iverilog"
# rsync: gitlab-ci-local copies the checkout into each job's folder with it (the GitLab pipeline test)
command -v rsync >/dev/null 2>&1 || missing="$missing rsync"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing$missing (Debian)" >&2
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "bootstrap:$missing not found and not root: the checks that need them will report 'not run'" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.fastml-install-stamp
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing fastml and dependencies into .venv (a few minutes the first time)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp"
fi

# da4ml's CMVM solver is numba-compiled on first use (~70 s on 2 cores, into numba's on-disk cache):
# pay it here, once per install, instead of in the first `fastml build`. Re-done after a reinstall.
jit_stamp=.venv/.fastml-jit-stamp
if [ "$(cat "$jit_stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: compiling da4ml's numba kernels once (about a minute)" >&2
  .venv/bin/python -c "from fastml._internal.tools import warm_jit_caches; warm_jit_caches()"
  echo "$want" > "$jit_stamp"
fi

# gitlab-ci-local (npm) runs ci/gitlab-ci.yml as a real pipeline in tests/integration/test_ci_pipelines.py,
# installed into .tools/ (git-ignored). 4.73.0: the newest that starts on Node.js 20 (4.74 and later call
# Set.prototype.union, Node.js 22). Without npm that test says "not run", never "pass".
GITLAB_CI_LOCAL_VERSION=4.73.0
if command -v npm >/dev/null 2>&1; then
  if [ "$(.tools/node_modules/.bin/gitlab-ci-local --version 2>/dev/null)" != "$GITLAB_CI_LOCAL_VERSION" ]; then
    echo "bootstrap: installing gitlab-ci-local $GITLAB_CI_LOCAL_VERSION into .tools/ (npm)" >&2
    npm install --prefix .tools --no-audit --no-fund --save-exact "gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION" >/dev/null
  fi
else
  echo "bootstrap: npm not found: the GitLab pipeline test will report 'not run'" >&2
fi
