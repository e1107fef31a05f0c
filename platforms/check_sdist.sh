#!/usr/bin/env bash
# The sdist promise: it carries the generated C, so installing it needs a C compiler and
# no Cython. This script checks that end to end:
#   1. builds the sdist from the clone (a snapshot of it: the working tree is not touched)
#   2. checks it ships a cext/*.c for every cext/*.pyx, and no compiled objects
#   3. makes a fresh venv with setuptools and wheel, and verifies Cython is NOT importable
#   4. installs the sdist there (with its test extra, no build isolation, so nothing can
#      bring Cython in behind our back) and verifies Cython is still absent
#   5. runs the sdist's own test suite against the installed package
#
#   bash platforms/check_sdist.sh
#
# Environment: OTELMETRICS_PLATFORMS_CACHE (work dir, default platforms/.cache),
# OTELMETRICS_DIST (where the sdist goes, default dist/), PYTHON (default python3).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=snapshot.sh
. "$HERE/snapshot.sh"
CACHE="${OTELMETRICS_PLATFORMS_CACHE:-$HERE/.cache}"
DIST="${OTELMETRICS_DIST:-$REPO/dist}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$CACHE" "$DIST"
CACHE="$(cd "$CACHE" && pwd)"
WORK="$CACHE/work-sdist"

T0=$(date +%s)
step() { printf '\n==> [sdist %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { echo "ERROR [sdist]: $*" >&2; exit 1; }

command -v cc >/dev/null || command -v gcc >/dev/null || die "no C compiler (cc/gcc) on PATH"

# ---------------------------------------------------------------------------------------
step "1/5 build the sdist from a snapshot of the clone"
rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/out" "$WORK/run"
snapshot_tree "$REPO" "$WORK/src"
"$PYTHON" -m venv "$WORK/build-venv"
"$WORK/build-venv/bin/python" -m pip install -q --disable-pip-version-check build
# Isolated build: the sdist step gets exactly what [build-system] requires (Cython
# included), and setup.py translates cext/*.pyx to the C that the sdist ships.
"$WORK/build-venv/bin/python" -m build --sdist --outdir "$WORK/out" "$WORK/src" > "$WORK/build.log" 2>&1 ||
    { tail -40 "$WORK/build.log"; die "sdist build failed (log: $WORK/build.log)"; }
SDIST=$(ls "$WORK"/out/*.tar.gz)
cp "$SDIST" "$DIST/"
echo "sdist: $DIST/$(basename "$SDIST") ($(stat -c %s "$SDIST") bytes)"

# ---------------------------------------------------------------------------------------
step "2/5 contents"
tar -tzf "$SDIST" > "$WORK/contents.txt"
TOP=$(head -1 "$WORK/contents.txt" | cut -d/ -f1)
npyx=0
for pyx in "$WORK"/src/cext/*.pyx; do
    base=$(basename "$pyx" .pyx)
    grep -qx "$TOP/cext/$base.c" "$WORK/contents.txt" || die "sdist lacks cext/$base.c (generated from $base.pyx)"
    grep -qx "$TOP/cext/$base.pyx" "$WORK/contents.txt" || die "sdist lacks cext/$base.pyx"
    npyx=$((npyx + 1))
done
! grep -qE '\.(so|o|pyd)$' "$WORK/contents.txt" || die "sdist contains compiled objects"
grep -q "^$TOP/tests/conftest.py$" "$WORK/contents.txt" || die "sdist lacks the test suite"
echo "$npyx modules: .pyx and generated .c both shipped; $(grep -c '^'"$TOP"'/tests/\(.*/\)\?test_[^/]*\.py$' "$WORK/contents.txt") test files"

# ---------------------------------------------------------------------------------------
step "3/5 fresh venv with a C compiler and no Cython"
VENV="$WORK/venv"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "setuptools>=77" wheel
no_cython() {
    if "$VENV/bin/python" -c "import Cython" 2>/dev/null; then
        die "Cython is importable in the check venv ($1)"
    fi
    echo "Cython absent ($1): OK"
}
no_cython "before install"

# ---------------------------------------------------------------------------------------
step "4/5 install the sdist (no build isolation: the venv's setuptools, no Cython)"
(cd "$WORK/run" && "$VENV/bin/python" -m pip install --disable-pip-version-check --no-build-isolation \
    "${SDIST}[test]") > "$WORK/install.log" 2>&1 ||
    { tail -40 "$WORK/install.log"; die "installing the sdist failed (log: $WORK/install.log)"; }
grep -E "Successfully (built|installed)" "$WORK/install.log" | cut -c1-300
no_cython "after install"
(cd "$WORK/run" && "$VENV/bin/python" -P -c "
import glob, os, otelmetrics, otelmetrics._native as n
sos = sorted(os.path.basename(p) for p in glob.glob(os.path.join(os.path.dirname(n.__file__), '*.so')))
print('installed', otelmetrics.__file__); print('compiled modules:', ' '.join(sos))
assert len(sos) == $npyx, sos
")

# ---------------------------------------------------------------------------------------
step "5/5 the sdist's test suite against the installed package"
tar -xzf "$SDIST" -C "$WORK/run"
SRC="$WORK/run/$TOP"
# From a scratch directory, with -P: the unpacked source's otelmetrics/ is never imported.
set +e
(cd "$WORK/run" && "$VENV/bin/python" -P -m pytest -p no:cacheprovider \
    --rootdir "$SRC" -c "$SRC/pyproject.toml" "$SRC/tests")
rc=$?
set -e
[ $rc -eq 0 ] || { step "FAILED: test suite exited $rc"; exit $rc; }
step "OK: $(basename "$SDIST") builds without Cython and its suite passed"
