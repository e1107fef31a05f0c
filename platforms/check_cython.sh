#!/usr/bin/env bash
# The Cython range that pyproject.toml allows: build otelmetrics with the lowest Cython it
# accepts and with the newest on PyPI, and run the whole suite against each build.
#
#   bash platforms/check_cython.sh            x86_64-3.11 (Debian bookworm's interpreter)
#   bash platforms/check_cython.sh ENTRY      another platforms/pythons.sh entry (native ones)
#
# "Lowest" is the newest patch release of the floor's minor version: for Cython>=3.1 that is
# Cython>=3.1,<3.2 (pip picks the newest 3.1.x, which is what a user pinning the floor gets).
# "Newest" is the newest release on the package index (pip index versions), pinned exactly.
# Each build is platforms/pythons.sh ENTRY with OTELMETRICS_CYTHON set: a fresh snapshot of
# the tree, Cython translating cext/*.pyx, the C compiled, the suite run from the snapshot.
# The two results are written into the block of README.md between the markers below (one row
# per Cython, replaced on each run); the table of tested Pythons is left alone.
#
# Environment: as platforms/pythons.sh (OTELMETRICS_PLATFORMS_CACHE, PYTEST_ADDOPTS);
# OTELMETRICS_README ("-" for no README change).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
ENTRY="${1:-x86_64-3.11}"
README="${OTELMETRICS_README:-$REPO/README.md}"
BEGIN_MARK='<!-- cython-range: begin (written by platforms/check_cython.sh) -->'
END_MARK='<!-- cython-range: end -->'
case "$ENTRY" in x86_64-*) ;; *) echo "check_cython.sh: native entries only (x86_64-3.X), not '$ENTRY'" >&2; exit 2 ;; esac

# The floor, from [build-system] requires.
FLOOR=$(python3 - "$REPO/pyproject.toml" <<'PY'
import re, sys, tomllib
with open(sys.argv[1], "rb") as f:
    reqs = tomllib.load(f)["build-system"]["requires"]
for r in reqs:
    m = re.match(r"(?i)^cython\s*>=\s*(\d+)\.(\d+)", r.replace(" ", ""))
    if m:
        print("%s.%s" % m.groups())
        break
else:
    sys.exit("no 'Cython>=X.Y' in [build-system] requires: %r" % (reqs,))
PY
)
LOWEST_REQ="Cython>=$FLOOR,<${FLOOR%.*}.$(( ${FLOOR#*.} + 1 ))"
NEWEST=$(python3 -m pip index versions Cython --disable-pip-version-check 2>/dev/null |
         sed -nE '1s/^Cython \(([0-9][0-9a-z.]*)\)$/\1/ip')
[ -n "$NEWEST" ] || { echo "check_cython.sh: cannot tell the newest Cython on the index" >&2; exit 1; }
echo "pyproject floor: Cython>=$FLOOR; lowest allowed build: $LOWEST_REQ; newest: Cython==$NEWEST"

# pythons.sh writes its row into a scratch copy of the table; the row is taken from there.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
rows=()
failed=()
for label_req in "lowest allowed|$LOWEST_REQ" "newest|Cython==$NEWEST"; do
    label="${label_req%%|*}" req="${label_req#*|}"
    printf '<!-- tested-pythons: begin (written by platforms/pythons.sh) -->\n<!-- tested-pythons: end -->\n' \
        > "$SCRATCH/table.md"
    echo
    echo "######## $ENTRY with $req ($label)"
    rc=0
    OTELMETRICS_CYTHON="$req" OTELMETRICS_README="$SCRATCH/table.md" bash "$HERE/pythons.sh" "$ENTRY" || rc=$?
    row=$(grep -E '^\| [0-9]' "$SCRATCH/table.md" | head -1)
    [ -n "$row" ] || row="| ${ENTRY#*-} | ${ENTRY%-*} | ? | ? | **FAILED** (exit $rc): no row | ? | $(date -u +%Y-%m-%d) |"
    # | Python | architecture | interpreter | Cython | suite | wall time | date |  ->
    # | Cython (label) | requirement | Python | suite | wall time | date |
    rows+=("$(python3 -c '
import sys
label, req, row = sys.argv[1:]
c = [x.strip() for x in row.strip().strip("|").split("|")]
print("| %s (%s) | `%s` | %s %s | %s | %s | %s |" % (c[3], label, req, c[0], c[1], c[4], c[5], c[6]))
' "$label" "$req" "$row")")
    [ "$rc" = 0 ] || failed+=("$req")
done

printf '%s\n' "${rows[@]}"
if [ "$README" != "-" ]; then
    python3 - "$README" "$BEGIN_MARK" "$END_MARK" "${rows[@]}" <<'PY'
import sys
path, begin, end, *rows = sys.argv[1:]
text = open(path).read()
if begin not in text or end not in text:
    sys.exit("%s has no block between %r and %r" % (path, begin, end))
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
header = ["| Cython | requirement | Python | suite | wall time | date |",
          "| --- | --- | --- | --- | --- | --- |"]
with open(path, "w") as f:
    f.write(head + begin + "\n" + "\n".join(header + rows) + "\n" + end + tail)
PY
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED with: ${failed[*]}" >&2
    exit 1
fi
echo "both passed: $LOWEST_REQ and Cython==$NEWEST on $ENTRY"
