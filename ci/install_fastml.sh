#!/usr/bin/env bash
# Install exactly this project (distribution "fastml-trigger") in CI, never a package someone else can own.
#
#   bash ci/install_fastml.sh SPEC
#
# SPEC (usually the CI variable FASTML_PIP_SPEC) must be one of:
#   .  or a folder          a checkout of fastml (its pyproject.toml must name fastml-trigger)
#   git+https://HOST/OWNER/REPO.git@COMMIT    a pinned git URL: COMMIT is a full 40-hex commit hash
#   fastml-trigger==X.Y.Z   the package index name, with an exact version
#   PATH/fastml_trigger-X.Y.Z-*.whl            a wheel built from a checkout
# Extras are allowed (".[generate]", "fastml-trigger[generate]==X.Y.Z"). Anything else is refused, in
# particular the bare name "fastml": on PyPI it is an unrelated project. FASTML_INSTALL_DRY_RUN=1 prints
# the pip command instead of running it. Exit status: 0 installed, 2 refused.
set -euo pipefail

DIST="fastml-trigger"
spec="${1:-}"
pip=(python -m pip install)

refuse() {
  echo "install_fastml.sh: FASTML_PIP_SPEC ${spec:+'$spec' }$1; expected '.', git+https://...@<40-hex commit>," \
       "$DIST==X.Y.Z or a fastml_trigger-*.whl (see ci/README.md)" >&2
  exit 2
}

extras_re='(\[[A-Za-z0-9_,-]+\])?'
if [ -z "$spec" ]; then
  refuse "is not set"
elif [[ "$spec" =~ ^(\.|\.\.|\.?\.?/.*|/.*)$extras_re$ ]] && [[ "$spec" != *.whl ]]; then
  folder="${spec%%\[*}"
  [ -f "$folder/pyproject.toml" ] || refuse "is not a folder with a pyproject.toml"
  grep -Eq "^name = \"$DIST\"" "$folder/pyproject.toml" || refuse "is a folder whose pyproject.toml does not name $DIST"
  target="$spec"
elif [[ "$spec" =~ ^git\+https://[^@[:space:]]+@[0-9a-f]{40}(#.*)?$ ]]; then
  target="$DIST @ ${spec%%#*}"
elif [[ "$spec" =~ ^fastml-trigger$extras_re==[0-9]+(\.[0-9]+)*([a-z]+[0-9]+)?$ ]]; then
  target="$spec"
elif [[ "$spec" =~ (^|/)fastml_trigger-[0-9][^/]*\.whl$ ]]; then
  [ -f "$spec" ] || refuse "is a wheel that does not exist"
  target="$spec"
elif [[ "$spec" =~ ^fastml($|[^-]) ]]; then
  refuse "names the PyPI project 'fastml', which is unrelated to this one"
else
  refuse "is not a pinned source of $DIST"
fi

if [ "${FASTML_INSTALL_DRY_RUN:-0}" = "1" ]; then
  echo "${pip[*]} $target"
else
  "${pip[@]}" "$target"
fi
