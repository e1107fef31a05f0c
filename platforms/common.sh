# shellcheck shell=bash
# Sourced by build.sh and pythons.sh: Debian packages fetched with a private apt
# configuration and unpacked into a sysroot (the machine's own apt/dpkg state untouched),
# and the requirement lists of pyproject.toml.
#
# pyproject_reqs PYPROJECT build|test
#                               one requirement a line: [build-system] requires, or the
#                               runtime dependencies plus the 'test' extra
# debian_suite PYVER            the Debian suite whose python3.X is PYVER (empty: none)
# apt_private APTROOT ARCH SUITE apt-get-args...
#                               apt-get with its own state, cache and (for a SUITE)
#                               sources list under APTROOT; SUITE empty: the host's sources
# fetch_sysroot SYSROOT ARCH SUITE "PKGS"
#                               the dependency closure of PKGS for ARCH from SUITE, unpacked
#                               with dpkg-deb -x into SYSROOT; reused while PKGS and SUITE
#                               are unchanged (SYSROOT/.complete); SYSROOT/.packages lists
#                               "package version" of what was unpacked
# The caller defines die().

# CPython minor versions in Debian's archive and the suite that carries each. Debian has
# never carried python3.10 or python3.12 in any suite (bookworm went 3.11, trixie 3.13).
debian_suite() {
    case "$1" in
        3.9) echo bullseye ;;
        3.11) echo bookworm ;;
        3.13) echo trixie ;;
        3.14) echo sid ;;
        *) echo "" ;;
    esac
}

apt_private() {
    local aptroot="$1" arch="$2" suite="$3"
    shift 3
    local srcopts=()
    if [ -n "$suite" ]; then
        # Only this suite's main component; the archive keys of the host's
        # debian-archive-keyring (it carries the keys of bullseye to trixie and later).
        mkdir -p "$aptroot/etc/sources.list.d" "$aptroot/etc/preferences.d"
        local uri="${OTELMETRICS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" \
            > "$aptroot/etc/sources.list"
        srcopts=(-o Dir::Etc::SourceList="$aptroot/etc/sources.list"
                 -o Dir::Etc::SourceParts="$aptroot/etc/sources.list.d"
                 -o Dir::Etc::Preferences="$aptroot/etc/preferences"
                 -o Dir::Etc::PreferencesParts="$aptroot/etc/preferences.d")
    fi
    mkdir -p "$aptroot/state/lists/partial" "$aptroot/cache/archives/partial"
    [ -f "$aptroot/state/status" ] || : > "$aptroot/state/status"
    apt-get -q -o Acquire::Retries=3 \
        -o APT::Architecture="$arch" -o APT::Architectures::="$arch" \
        -o Dir::State="$aptroot/state" -o Dir::State::status="$aptroot/state/status" \
        -o Dir::Cache="$aptroot/cache" -o Debug::NoLocking=1 \
        -o APT::Sandbox::User=root "${srcopts[@]}" "$@"
}

fetch_sysroot() {
    local sysroot="$1" arch="$2" suite="$3" pkgs="$4"
    local key="$pkgs${suite:+ ($suite)}" d
    # Merged /usr (trixie on): /lib etc. are symlinks that base-files makes, not in the
    # closure; qemu -L looks for /lib/ld-linux-*.so.1 there.
    for d in bin sbin lib lib64; do
        if [ -d "$sysroot/usr/$d" ] && [ ! -e "$sysroot/$d" ]; then ln -s "usr/$d" "$sysroot/$d"; fi
    done
    if [ -f "$sysroot/.complete" ] && [ "$(head -1 "$sysroot/.complete")" = "$key" ]; then
        echo "reusing sysroot $sysroot ($(tail -1 "$sysroot/.complete"))"
        return 0
    fi
    local aptroot="$sysroot.apt"
    # An empty dpkg status, so 'install --download-only' fetches the whole dependency
    # closure. Mirrors can be mid-sync for a moment: retry, then go on with what was
    # fetched (the download step fails clearly if a package is really missing).
    local attempt
    for attempt in 1 2 3; do
        apt_private "$aptroot" "$arch" "$suite" update && break
        [ $attempt = 3 ] || { echo "apt-get update ($arch${suite:+ $suite}) failed (attempt $attempt), retrying"; sleep $((attempt * 10)); }
    done
    # shellcheck disable=SC2086
    apt_private "$aptroot" "$arch" "$suite" install -y --download-only --no-install-recommends $pkgs ||
        die "cannot download $pkgs ($arch${suite:+, $suite})"
    rm -rf "$sysroot.tmp"
    mkdir -p "$sysroot.tmp"
    local n=0 deb
    for deb in "$aptroot"/cache/archives/*.deb; do
        dpkg-deb -x "$deb" "$sysroot.tmp"
        dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb" >> "$sysroot.tmp/.packages"
        n=$((n + 1))
    done
    rm -f "$aptroot"/cache/archives/*.deb
    printf '%s\n%s\n' "$key" "$n Debian $arch packages, $(date -u +%Y-%m-%dT%H:%MZ)" > "$sysroot.tmp/.complete"
    for d in bin sbin lib lib64; do
        if [ -d "$sysroot.tmp/usr/$d" ] && [ ! -e "$sysroot.tmp/$d" ]; then ln -s "usr/$d" "$sysroot.tmp/$d"; fi
    done
    rm -rf "$sysroot"
    mv "$sysroot.tmp" "$sysroot"
    echo "sysroot ready: $sysroot ($(tail -1 "$sysroot/.complete"), $(du -sh "$sysroot" | cut -f1))"
}

pyproject_reqs() {
    python3 - "$1" "$2" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    data = tomllib.load(f)
if sys.argv[2] == "build":
    reqs = data["build-system"]["requires"]
else:
    project = data["project"]
    reqs = list(project.get("dependencies", [])) + list(project.get("optional-dependencies", {}).get("test", []))
print("\n".join(reqs))
PY
}
