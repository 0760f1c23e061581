#!/usr/bin/env bash
# Gate every built project: run `fastml check` on each hls_projects/<name>/report.json.
#
# usage: ci/check_all.sh [PROJECTS_DIR] [BASELINE_DIR] [OUT_DIR]
#   PROJECTS_DIR  folder holding <name>/report.json            (default: hls_projects)
#   BASELINE_DIR  folder holding the default branch's <name>/report.json; optional. A project with no
#                 baseline report (new in this change) is checked without one.
#   OUT_DIR       where <name>.junit.xml, <name>.md, <name>.json, <name>.html and summary.md go (default: fastml-check);
#                 <name>.html is the project's report page (`fastml report`), side by side with its baseline if any
# env: FASTML  command that runs fastml (default: fastml), e.g. FASTML="python -m fastml"
#
# Exit status: 0 only if every project passes all its budgets; 1 if any fails or if there is no
# project to check (a gate that checked nothing must not pass); 2 on a usage error.
set -u

projects=${1:-hls_projects}
baseline=${2:-}
out=${3:-fastml-check}
read -r -a fastml <<< "${FASTML:-fastml}"

if [ ! -d "$projects" ]; then
    echo "check_all.sh: $projects is not a folder (build the configs first: fastml build configs/<name>.yaml)" >&2
    exit 2
fi
mkdir -p "$out"
: > "$out/summary.md"

checked=0
failed=()
for dir in "$projects"/*/; do
    dir=${dir%/}
    [ -f "$dir/report.json" ] || continue
    name=$(basename "$dir")
    args=(check "$dir" --junit "$out/$name.junit.xml" --markdown "$out/$name.md" --json "$out/$name.json")
    if [ -n "$baseline" ]; then
        args+=(--baseline "$baseline" --allow-missing-baseline)
    fi
    checked=$((checked + 1))
    if ! "${fastml[@]}" "${args[@]}"; then
        failed+=("$name")
    fi
    [ -f "$out/$name.md" ] && cat "$out/$name.md" >> "$out/summary.md"
    # the page a reviewer opens: never decides the gate, so a page that cannot be drawn only says so
    page=(report "$dir" --out "$out/$name.html")
    if [ -n "$baseline" ] && [ -f "$baseline/$name/report.json" ]; then
        page+=(--baseline "$baseline/$name")
    fi
    "${fastml[@]}" "${page[@]}" > /dev/null || echo "check_all.sh: $name: could not render $out/$name.html" >&2
    echo
done

if [ "$checked" -eq 0 ]; then
    echo "check_all.sh: no <name>/report.json under $projects: nothing was checked" | tee -a "$out/summary.md" >&2
    exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
    echo "check_all.sh: ${#failed[@]} of $checked project(s) failed their budgets: ${failed[*]}" | tee -a "$out/summary.md"
    exit 1
fi
echo "check_all.sh: all $checked project(s) within budget" | tee -a "$out/summary.md"
