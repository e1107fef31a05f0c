# shellcheck shell=bash
# Sourced by build.sh and check_sdist.sh.
#
# snapshot_tree REPO DEST: copy what a fresh clone of REPO would have (tracked and
# untracked-but-not-ignored files) into DEST, so builds never write into the
# working copy. Outside a git checkout: the tree minus build outputs and caches.
snapshot_tree() {
    local repo="$1" dest="$2"
    if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
            (cd "$repo" && while IFS= read -r -d '' f; do
                 [ -e "$f" ] && printf '%s\0' "$f"
             done) |
            (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$dest"
    else
        (cd "$repo" && tar --exclude=./.git --exclude=./build --exclude=./dist \
            --exclude=./platforms/.cache --exclude='*.so' --exclude='./cext/*.c' -cf - .) | tar -xf - -C "$dest"
    fi
}
