# shellcheck shell=bash
# Sourced by pythons.sh: a free-threaded CPython (PEP 703, `--disable-gil`) built from the
# upstream source that Ubuntu's archive carries as python3.13's and python3.14's .orig
# tarballs, since neither Debian nor Ubuntu ships a free-threaded interpreter package and the
# Debian mirror serves no source packages. Each tarball is pinned by its sha256 (the one listed in the signed Sources
# index of Ubuntu's python3.13 / python3.14 source package).
#
# freethreaded_python PYVER PREFIX
#     PYVER is 3.13t or 3.14t. Downloads (or reuses) the pinned tarball in the cache, checks its
#     sha256, builds it with `./configure --disable-gil --prefix=PREFIX` (no PGO, no LTO),
#     `make -j2` and installs it into PREFIX; reused while PREFIX/.complete names the same
#     tarball. PREFIX/.complete's last line says how long the build took.
#
# Needs a C toolchain and CPython's build dependencies (Debian package names):
FT_BUILD_DEPS="build-essential pkg-config libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev
libsqlite3-dev libreadline-dev libncurses-dev libgdbm-dev uuid-dev libexpat1-dev"
# which are installed with apt-get when one of their headers is missing and we are root.
#
# Environment:
#   OTELMETRICS_CPYTHON_MIRROR   where pool/main/p/python3.X/ is (default: Ubuntu's archive)
# The caller defines die(), step() and CACHE.

freethreaded_source() {
    case "$1" in
        3.13t) echo "python3.13 3.13.7 5462f9099dfd30e238def83c71d91897d8caa5ff6ebc7a50f14d4802cdaaa79a" ;;
        3.14t) echo "python3.14 3.14.4 d923c51303e38e249136fc1bdf3568d56ecb03214efdef48516176d3d7faaef8" ;;
        *) echo "" ;;
    esac
}

freethreaded_python() {
    local pyver="$1" prefix="$2" src
    src="$(freethreaded_source "$pyver")"
    [ -n "$src" ] || die "no pinned CPython source for $pyver"
    local pkg version sha
    read -r pkg version sha <<<"$src"
    local tarball="$CACHE/${pkg}_$version.orig.tar.xz"
    local key="$pkg $version $sha --disable-gil"
    if [ -x "$prefix/bin/python$pyver" ] && [ -f "$prefix/.complete" ] &&
       [ "$(head -1 "$prefix/.complete")" = "$key" ]; then
        echo "reusing $prefix ($(tail -1 "$prefix/.complete"))"
        return 0
    fi
    if [ ! -f "$tarball" ] || [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$sha" ]; then
        local mirror="${OTELMETRICS_CPYTHON_MIRROR:-http://archive.ubuntu.com/ubuntu}"
        rm -f "$tarball"
        curl -fsSL --retry 3 -o "$tarball.part" "$mirror/pool/main/p/$pkg/${pkg}_$version.orig.tar.xz" ||
            die "cannot download the CPython $version source"
        mv "$tarball.part" "$tarball"
    fi
    [ "$(sha256sum "$tarball" | cut -d' ' -f1)" = "$sha" ] || die "$tarball: sha256 is not $sha"
    local h missing=""
    for h in ffi.h openssl/ssl.h sqlite3.h bzlib.h lzma.h zlib.h readline/readline.h uuid/uuid.h; do
        [ -f "/usr/include/$h" ] || [ -f "/usr/include/x86_64-linux-gnu/$h" ] || missing="$missing $h"
    done
    if [ -n "$missing" ]; then
        echo "CPython's build dependencies are missing (no$missing): apt-get install"
        [ "$(id -u)" = 0 ] || die "CPython's build dependencies are missing: apt-get install $FT_BUILD_DEPS"
        # shellcheck disable=SC2086
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $FT_BUILD_DEPS; } >/dev/null ||
            die "apt-get could not install CPython's build dependencies"
    fi
    local build="$CACHE/build-cpython-$version${pyver##*[0-9]}"
    rm -rf "$build" "$prefix"
    mkdir -p "$build"
    tar -xJf "$tarball" -C "$build" --strip-components=1
    local t0 jobs
    t0=$(date +%s)
    jobs="${OTELMETRICS_BUILD_JOBS:-2}"
    echo "building CPython $version --disable-gil (make -j$jobs; log: $build/build.log)"
    (cd "$build" && ./configure --disable-gil --prefix="$prefix" > build.log 2>&1 &&
        make -j"$jobs" >> build.log 2>&1 && make install >> build.log 2>&1) ||
        { tail -40 "$build/build.log"; die "CPython build failed (log: $build/build.log)"; }
    local secs=$(( $(date +%s) - t0 ))
    [ -x "$prefix/bin/python$pyver" ] || die "no $prefix/bin/python$pyver after the build"
    "$prefix/bin/python$pyver" -c 'import sys, sysconfig, ssl, sqlite3, ctypes, lzma, bz2, zlib; assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1' ||
        die "the built interpreter is not free-threaded or lacks a standard module"
    printf '%s\n%s\n' "$key" "CPython $version --disable-gil built in $((secs / 60)) min $((secs % 60)) s (make -j$jobs), $(date -u +%Y-%m-%dT%H:%MZ)" \
        > "$prefix/.complete"
    rm -rf "$build"
    echo "CPython ready: $prefix ($(tail -1 "$prefix/.complete"))"
}
