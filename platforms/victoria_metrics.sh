#!/usr/bin/env bash
# VictoriaMetrics, a real OTLP/HTTP receiver, for tests/export/test_otlp_receiver.py: Debian
# trixie's victoria-metrics package (a single static Go binary) and the libzstd it links (trixie's
# is newer than bookworm's), fetched with a private apt configuration (platforms/common.sh; the
# machine's apt and dpkg state are not touched) and unpacked into the cache, where the tests find
# it: platforms/.cache/victoria-metrics/usr/bin/victoria-metrics, its libraries beside it under
# usr/lib. About 41 MB to download, once; reused while the cache holds it.
#
#   bash platforms/victoria_metrics.sh        # prints where the binary is
#
# Environment: OTELMETRICS_PLATFORMS_CACHE (default platforms/.cache), OTELMETRICS_DEBIAN_MIRROR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"
die() { echo "ERROR [victoria-metrics]: $*" >&2; exit 1; }

CACHE="${OTELMETRICS_PLATFORMS_CACHE:-$HERE/.cache}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
DEST="$CACHE/victoria-metrics"
ARCH="$(dpkg --print-architecture)"
PKGS="victoria-metrics libzstd1"

if [ -x "$DEST/usr/bin/victoria-metrics" ] && [ "$(cat "$DEST/.complete" 2>/dev/null)" = "$ARCH $PKGS" ]; then
    echo "$DEST/usr/bin/victoria-metrics"
    exit 0
fi
APTROOT="$DEST.apt"
for attempt in 1 2 3; do
    apt_private "$APTROOT" "$ARCH" trixie update >/dev/null && break
    [ "$attempt" = 3 ] && die "apt-get update (trixie, $ARCH) failed"
    sleep $((attempt * 10))
done
rm -rf "$DEST.tmp" "$APTROOT/debs"
mkdir -p "$DEST.tmp" "$APTROOT/debs"
# shellcheck disable=SC2086
(cd "$APTROOT/debs" && apt_private "$APTROOT" "$ARCH" trixie download $PKGS >/dev/null) ||
    die "cannot download $PKGS (trixie, $ARCH)"
for deb in "$APTROOT"/debs/*.deb; do
    dpkg-deb -x "$deb" "$DEST.tmp"
done
rm -rf "$APTROOT/debs"
"$DEST.tmp/usr/bin/victoria-metrics" -version >/dev/null 2>&1 ||
    LD_LIBRARY_PATH="$DEST.tmp/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)" \
        "$DEST.tmp/usr/bin/victoria-metrics" -version >/dev/null ||
    die "the unpacked victoria-metrics does not run"
echo "$ARCH $PKGS" > "$DEST.tmp/.complete"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "$DEST/usr/bin/victoria-metrics"
