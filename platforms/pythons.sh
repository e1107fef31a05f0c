#!/usr/bin/env bash
# Every CPython a device runs: build otelmetrics for each of Debian's interpreters and run
# the whole test suite against the installed package, then record the result in the
# README's table of tested Pythons.
#
#   bash platforms/pythons.sh [ENTRY...]     run these (default: $DEFAULT_ENTRIES below)
#   bash platforms/pythons.sh all            every entry
#   bash platforms/pythons.sh list           the entries and where each interpreter comes from
#
# ENTRY is ARCH-VERSION:
#   x86_64-3.9 x86_64-3.11 x86_64-3.13 x86_64-3.14
#       Debian's python3.X for amd64 (bullseye, bookworm, trixie, sid), fetched with a private
#       apt configuration (platforms/common.sh: own state, cache and sources list; the
#       machine's apt and dpkg state are not touched) and unpacked into a per-version
#       sysroot under platforms/.cache. The interpreter is patched (Debian's patchelf, fetched
#       the same way) to load the sysroot's own ld.so and libraries, since trixie's and sid's
#       need a newer glibc than this machine's. Then, natively: a venv (pip from a wheel),
#       the [build-system] requirements and the test extra from PyPI, otelmetrics built
#       from a snapshot of the tree against the sysroot's headers, and `pytest` from the
#       snapshot's root (the tests import the installed package).
#   x86_64-3.13t x86_64-3.14t
#       free-threaded CPython 3.13 and 3.14 (no GIL), which no Debian or Ubuntu package carries: built
#       from the pinned upstream source once (platforms/freethreaded.sh; `--disable-gil`,
#       make -j2, about 7 minutes on the 2-core machine) and installed into the cache, then
#       steps 2-5 as above; the suite runs with PYTHON_GIL=0. grpcio has no free-threaded
#       wheel (a source build takes far longer than the rest), so it and the reference's
#       OTLP/gRPC exporter are left out there and the OTLP/gRPC tests skip, saying so.
#   aarch64-3.11 aarch64-3.13 armv7l-3.11 armv6l-3.11
#       platforms/build.sh TARGET with OTELMETRICS_PYTHON=VERSION: cross-built wheel, the
#       suite under qemu-user with the target's interpreter.
# No Debian suite carries python3.10 or python3.12, so neither is here.
#
# Each run writes one row (Python, architecture, interpreter package, suite result, time,
# date) into the block of README.md between the two marker comments below; rows of entries
# not run are kept as they were.
#
# Environment:
#   OTELMETRICS_PLATFORMS_CACHE   cache dir (default: platforms/.cache in the repository)
#   OTELMETRICS_CYTHON            the Cython requirement for the build (default: pyproject's)
#   OTELMETRICS_SDIST             an sdist (platforms/check_sdist.sh leaves one in dist/): the
#                                 x86_64 entries install it instead of the tree, with Cython
#                                 uninstalled from the venv (its generated C must build), and run
#                                 its own tests; the table's Cython cell says "sdist"
#   OTELMETRICS_README            the file whose table block is rewritten (default README.md;
#                                 "-" for none)
#   PYTEST_ADDOPTS                extra pytest options, passed through as usual
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=snapshot.sh
. "$HERE/snapshot.sh"
# shellcheck source=common.sh
. "$HERE/common.sh"
# shellcheck source=freethreaded.sh
. "$HERE/freethreaded.sh"

NATIVE_ENTRIES="x86_64-3.9 x86_64-3.11 x86_64-3.13 x86_64-3.14 x86_64-3.13t x86_64-3.14t"
EMULATED_ENTRIES="aarch64-3.11 aarch64-3.13 armv7l-3.11 armv6l-3.11"
DEFAULT_ENTRIES="x86_64-3.9 x86_64-3.13 x86_64-3.14 aarch64-3.13"
BEGIN_MARK='<!-- tested-pythons: begin (written by platforms/pythons.sh) -->'
END_MARK='<!-- tested-pythons: end -->'

CACHE="${OTELMETRICS_PLATFORMS_CACHE:-$HERE/.cache}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
README="${OTELMETRICS_README:-$REPO/README.md}"

T0=$(date +%s)
ENTRY=pythons
step() { printf '\n==> [%s %4ss] %s\n' "$ENTRY" "$(( $(date +%s) - T0 ))" "$*"; }
die() { echo "ERROR [$ENTRY]: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# patchelf from Debian (bookworm, the host's release), unpacked next to the sysroots.
patchelf_tool() {
    local tools="$CACHE/tools-amd64"
    if [ ! -x "$tools/usr/bin/patchelf" ]; then
        rm -rf "$tools" "$tools.apt/cache/archives"
        apt_private "$tools.apt" amd64 bookworm update >/dev/null
        (cd "$CACHE" && apt_private "$tools.apt" amd64 bookworm download patchelf >/dev/null)
        dpkg-deb -x "$CACHE"/patchelf_*.deb "$tools"
        rm -f "$CACHE"/patchelf_*.deb
    fi
    echo "$tools/usr/bin/patchelf"
}

# run_native ARCH VERSION: the x86-64 path described at the top.
run_native() {
    local pyver="$1" suite
    # Free-threaded (3.13t, 3.14t): CPython built from source instead of Debian's sysroot (the
    # lines down to ROW_PACKAGE are the Debian branch, left unindented).
    if [ "${pyver%t}" != "$pyver" ]; then
    local sysroot="$CACHE/sysroot-amd64-py$pyver" version
    local py="$sysroot/usr/bin/python$pyver"
    step "1/5 free-threaded CPython $pyver built from source (platforms/freethreaded.sh)"
    freethreaded_python "$pyver" "$sysroot/usr"
    version=$("$py" -c 'import platform; print(platform.python_version())') || die "python$pyver does not start"
    ROW_PACKAGE="CPython $version --disable-gil, built from source; PYTHON_GIL=${PYTHON_GIL-0}"
    else
    suite="$(debian_suite "$pyver")"
    [ -n "$suite" ] || die "no Debian suite carries python$pyver"
    local sysroot="$CACHE/sysroot-amd64-py$pyver"
    local py="$sysroot/usr/bin/python$pyver"

    step "1/5 sysroot: Debian $suite python$pyver (amd64)"
    # libstdc++6: test-only dependencies with C++ extensions (protobuf's upb) need it.
    # Before 3.10 pip needs distutils, which Debian ships apart (python3-distutils).
    local pkgs="python$pyver libpython$pyver-dev libstdc++6"
    [ "$pyver" != 3.9 ] || pkgs="$pkgs python3-distutils"
    fetch_sysroot "$sysroot" amd64 "$suite" "$pkgs"
    [ -x "$py" ] || die "python$pyver missing from the sysroot"
    [ -f "$sysroot/usr/include/python$pyver/Python.h" ] || die "Python.h missing from the sysroot"
    if [ ! -f "$sysroot/.patched" ]; then
        # The sysroot's own dynamic loader and library directories (DT_RPATH, not RUNPATH:
        # it applies to the libraries that lib-dynload modules load too).
        local ldso patchelf
        # (bullseye: a relative symlink to ld-2.31.so; trixie and sid: the file itself)
        ldso=$(readlink -f "$(find "$sysroot" -path '*/x86_64-linux-gnu/ld-linux-x86-64.so.2' | head -1)")
        case "$ldso" in "$sysroot"/*) ;; *) die "no ld-linux-x86-64.so.2 in the sysroot" ;; esac
        patchelf=$(patchelf_tool)
        "$patchelf" --set-interpreter "$ldso" --force-rpath \
            --set-rpath "$sysroot/lib/x86_64-linux-gnu:$sysroot/usr/lib/x86_64-linux-gnu" "$py"
        echo "$ldso" > "$sysroot/.patched"
    fi
    local version
    version=$("$py" -c 'import platform; print(platform.python_version())') || die "python$pyver does not start"
    local debver
    debver=$(sed -n "s/^python$pyver //p" "$sysroot/.packages")
    echo "python $version (Debian $suite python$pyver $debver), run by $(cat "$sysroot/.patched")"
    ROW_PACKAGE="Debian $suite python$pyver $debver"
    fi

    step "2/5 venv: pip, build and test requirements"
    local reqs cython
    cython="${OTELMETRICS_CYTHON:-}"
    reqs=$(pyproject_reqs "$REPO/pyproject.toml" build; pyproject_reqs "$REPO/pyproject.toml" test)
    # No free-threaded grpcio wheel (see the top): its tests skip there.
    [ "${pyver%t}" = "$pyver" ] || reqs=$(printf '%s\n' "$reqs" | grep -v '^grpcio\|^opentelemetry-exporter-otlp-proto-grpc')
    # Hypothesis since 6.156 has a compiled (Rust) core with no cp313t wheel, and building it
    # needs crates.io: on 3.13t the last pure-Python release, which runs the same tests.
    [ "$pyver" != 3.13t ] || reqs=$(printf '%s\n' "$reqs" | sed 's/^hypothesis\b.*/&,<6.156/')
    local key venv
    key=$(printf '%s\n%s\n' "$version" "$reqs" | sha256sum | cut -c1-16)
    venv="$CACHE/venv-x86_64-py$pyver"
    if [ ! -f "$venv/.reqs-$key" ]; then
        rm -rf "$venv"
        "$py" -m venv --without-pip "$venv"
        local pipdir="$CACHE/pip-py$pyver"
        rm -rf "$pipdir"
        python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version "${pyver%t}" -d "$pipdir" pip
        # pip runs from its own wheel to install itself into the venv.
        "$venv/bin/python" "$(ls "$pipdir"/pip-*.whl)/pip" install -q --disable-pip-version-check pip
        rm -rf "$pipdir"
        printf '%s\n' "$reqs" > "$venv/requirements.txt"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$venv/requirements.txt"
        touch "$venv/.reqs-$key"
    else
        echo "reusing $venv"
    fi
    if [ -n "${OTELMETRICS_SDIST:-}" ]; then
        # The sdist's promise: a C compiler and no Cython. (The next tree build reinstalls it.)
        "$venv/bin/python" -m pip uninstall -q -y --disable-pip-version-check Cython >/dev/null 2>&1 || true
    elif [ -n "$cython" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$cython"
    else
        # Back to the declared requirement if an earlier run pinned another Cython.
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade-strategy only-if-needed \
            "$(printf '%s\n' "$reqs" | grep -i '^cython' | head -1)"
    fi
    "$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null |
        grep -iE '^(cython|setuptools|pytest|hypothesis|opentelemetry-sdk|protobuf) ' | tr -s ' ' | tr '\n' ';'; echo
    local work="$CACHE/work-x86_64-py$pyver"
    rm -rf "$work"
    mkdir -p "$work/src"
    if [ -n "${OTELMETRICS_SDIST:-}" ]; then
        local sdist generated
        sdist=$(readlink -f "$OTELMETRICS_SDIST")
        [ -f "$sdist" ] || die "OTELMETRICS_SDIST: no file $OTELMETRICS_SDIST"
        ! "$venv/bin/python" -c 'import Cython' 2>/dev/null || die "Cython still importable in $venv"
        tar -xzf "$sdist" -C "$work/src" --strip-components=1
        generated=$(sed -nE '1s/.*Generated by Cython ([0-9][0-9a-z.]*).*/\1/p' "$(ls "$work"/src/cext/*.c | head -1)")
        [ -n "$generated" ] || die "the sdist has no Cython-generated cext/*.c"
        ROW_CYTHON="none: the sdist's C (Cython $generated)"
        step "3/5 build otelmetrics from the sdist $(basename "$sdist"), no Cython in the venv"
    else
        ROW_CYTHON=$("$venv/bin/python" -c 'import Cython; print(Cython.__version__)')
        step "3/5 build otelmetrics from a snapshot of the tree (Cython $ROW_CYTHON)"
        snapshot_tree "$REPO" "$work/src"
    fi
    # The sysroot's headers first; its pyconfig.h includes the multiarch one by a path
    # relative to an include directory, found last (-idirafter) after the host's own.
    (cd "$work/src" && env -u CFLAGS -u LDFLAGS -u CC -u LDSHARED \
        CPPFLAGS="-I$sysroot/usr/include/python$pyver -I$sysroot/usr/include/x86_64-linux-gnu/python$pyver -idirafter $sysroot/usr/include" \
        "$venv/bin/python" -m pip install --disable-pip-version-check --no-build-isolation --no-deps \
            --force-reinstall -v . > "$work/build.log" 2>&1) ||
        { tail -60 "$work/build.log"; die "build failed (log: $work/build.log)"; }
    echo "C compiler warnings: $(grep -cE '\.c:[0-9]+:[0-9]+: warning:' "$work/build.log" || true)"
    if [ -n "${OTELMETRICS_SDIST:-}" ]; then
        ! grep -qiE 'cythoniz|Compiling cext/.*\.pyx' "$work/build.log" || die "the sdist build ran Cython"
        ! "$venv/bin/python" -c 'import Cython' 2>/dev/null || die "installing the sdist brought Cython in"
    fi

    step "4/5 the installed package"
    (cd "$work" && "$venv/bin/python" - <<'PY'
import glob, os, sys, otelmetrics, otelmetrics._native as n
sos = sorted(os.path.basename(p) for p in glob.glob(os.path.join(os.path.dirname(n.__file__), "*.so")))
print("python", sys.version.split()[0], "from", sys.executable)
print("otelmetrics from", otelmetrics.__file__)
print("compiled modules:", " ".join(sos))
assert "site-packages" in otelmetrics.__file__, otelmetrics.__file__
PY
    ) || die "otelmetrics does not import"

    step "5/5 the whole suite: pytest from the source's root (snapshot or sdist)"
    # From the root as the README says: `pytest` (not `python -m pytest`) does not put the
    # root on sys.path, so the tests import the installed package.
    set +e
    # A free-threaded entry runs with the GIL off (PYTHON_GIL=0, unless the caller set it).
    local gil=()
    [ "${pyver%t}" = "$pyver" ] || gil=(PYTHON_GIL="${PYTHON_GIL-0}")
    (cd "$work/src" && env "${gil[@]}" PATH="$venv/bin:$PATH" timeout 3600 "$venv/bin/pytest" -p no:cacheprovider) 2>&1 |
        tee "$work/pytest.log"
    local rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

# run_emulated TARGET VERSION: platforms/build.sh, its output kept for the row.
run_emulated() {
    local target="$1" pyver="$2" log="$CACHE/pythons-$1-$2.log"
    set +e
    OTELMETRICS_PYTHON="$pyver" bash "$HERE/build.sh" "$target" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    set -e
    local debarch debver
    debarch=$(. "$HERE/$target/target.env"; echo "$DEB_ARCH")
    debver=$(sed -n "s/^python$pyver //p" "$CACHE/sysroot-$debarch-py$pyver/.packages" 2>/dev/null || true)
    ROW_PACKAGE="Debian $(debian_suite "$pyver") python$pyver $debver (qemu-user)"
    ROW_CYTHON=$(grep -oE 'cython==[0-9.]+|Cython [0-9.]+' -i "$log" | head -1 | grep -oE '[0-9.]+$' || true)
    return "$rc"
}

# record ENTRY RC SECONDS LOG: the entry's row in the README block.
record() {
    local entry="$1" rc="$2" secs="$3" log="$4" summary
    summary=$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$log" | tail -1 |
              sed -E 's/^=+ //; s/ in [0-9.]+s.*$//' || true)
    [ -n "$summary" ] || summary="no pytest summary (exit $rc)"
    [ "$rc" = 0 ] || summary="**FAILED** (exit $rc): $summary"
    [ "$README" = "-" ] && return 0
    python3 - "$README" "$BEGIN_MARK" "$END_MARK" "$entry" "$ROW_PACKAGE" "${ROW_CYTHON:-?}" \
        "$summary" "$secs" "$(date -u +%Y-%m-%d)" <<'PY'
import sys
path, begin, end, entry, package, cython, summary, secs, date = sys.argv[1:]
with open(path) as f:
    text = f.read()
if begin not in text or end not in text:
    sys.exit("%s has no block between %r and %r" % (path, begin, end))
head, rest = text.split(begin, 1)
block, tail = rest.split(end, 1)
header = ["| Python | architecture | interpreter | Cython | suite | wall time | date |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
rows = {}
for line in block.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 7 and cells[0] not in ("Python", "---"):
        rows[(cells[1], cells[0])] = line
arch, version = entry.rsplit("-", 1)
rows[(arch, version)] = "| %s | %s | %s | %s | %s | %d min %02d s | %s |" % (
    version, arch, package, cython, summary, int(secs) // 60, int(secs) % 60, date)
order = lambda k: (k[0] != "x86_64", k[0], tuple(int(p.rstrip("t")) for p in k[1].split(".")), k[1])
body = "\n".join(header + [rows[k] for k in sorted(rows, key=order)])
with open(path, "w") as f:
    f.write(head + begin + "\n" + body + "\n" + end + tail)
PY
    echo "README row: $entry: $summary ($secs s)"
}

# ---------------------------------------------------------------------------------------
case "${1:-}" in
    list)
        for e in $NATIVE_ENTRIES $EMULATED_ENTRIES; do
            v="${e##*-}"
            case "$v" in *t) printf '%-14s CPython %s --disable-gil, built from source (freethreaded.sh)\n' "$e" "${v%t}"; continue ;; esac
            printf '%-14s Debian %-9s python%s\n' "$e" "$(debian_suite "$v")" "$v"
        done
        exit 0 ;;
    all) set -- $NATIVE_ENTRIES $EMULATED_ENTRIES ;;
    "") set -- $DEFAULT_ENTRIES ;;
esac

# The row's interpreter and Cython, from the entry's subshell: also when the suite failed.
save_row() { echo "$ROW_PACKAGE" > "$CACHE/row-package"; echo "$ROW_CYTHON" > "$CACHE/row-cython"; }

failed=()
for entry in "$@"; do
    arch="${entry%-*}"
    pyver="${entry##*-}"
    ENTRY="$entry"
    T0=$(date +%s)
    ROW_PACKAGE="" ROW_CYTHON=""
    set +e
    case " $NATIVE_ENTRIES $EMULATED_ENTRIES " in
        *" $entry "*) ;;
        *) die "unknown entry '$entry' (bash platforms/pythons.sh list)" ;;
    esac
    if [ "$arch" = x86_64 ]; then
        (set -e; trap save_row EXIT; run_native "$pyver")
        rc=$?
        log="$CACHE/work-x86_64-py$pyver/pytest.log"
    else
        (set -e; trap save_row EXIT; run_emulated "$arch" "$pyver")
        rc=$?
        log="$CACHE/pythons-$arch-$pyver.log"
    fi
    set -e
    ROW_PACKAGE=$(cat "$CACHE/row-package" 2>/dev/null || echo "python$pyver")
    ROW_CYTHON=$(cat "$CACHE/row-cython" 2>/dev/null || echo "?")
    rm -f "$CACHE/row-package" "$CACHE/row-cython"
    [ -f "$log" ] || { mkdir -p "$(dirname "$log")"; : > "$log"; }
    record "$entry" "$rc" "$(( $(date +%s) - T0 ))" "$log"
    [ "$rc" = 0 ] || failed+=("$entry")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all passed: $*"
