#!/usr/bin/env bash
# The newest glibc / libstdc++ symbol versions the package's binaries ask for, and which files ask:
#   packaging/glibc_floor.sh dist/cpu/inspector
# The GLIBC_ maximum is the package's glibc floor (README, "System requirements"); GLIBCXX_ and
# CXXABI_ are what the system's libstdc++.so.6 must provide (the package does not ship one).
set -euo pipefail
dir=${1:-dist/cpu/inspector}; dir=${dir%/}
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
find "$dir" -type f \( -name '*.so*' -o -perm -u+x \) -print0 | while IFS= read -r -d '' f; do
    file -b "$f" 2>/dev/null | grep -q '^ELF' || continue
    # the versions this file needs (its undefined symbols), not the ones it defines
    objdump -T "$f" 2>/dev/null | awk '$4 == "*UND*" || $3 == "*UND*"' \
        | { grep -o '\(GLIBC\|GLIBCXX\|CXXABI\)_[0-9.]*' || true; } | sort -u | sed "s|^|${f#"$dir"/} |"
done > "$tmp"
for tag in GLIBC GLIBCXX CXXABI; do
    top=$(awk '{print $2}' "$tmp" | grep "^${tag}_[0-9]" | sed "s/^${tag}_//" | sort -V | tail -1)
    [ -n "$top" ] || { echo "$tag: none"; continue; }
    echo "$tag $top: needed by: $(awk -v v="${tag}_$top" '$2 == v {print $1}' "$tmp" | head -5 | tr '\n' ' ')"
done
# The libraries the package expects from the system: every NEEDED entry of its binaries that it
# does not ship itself (glibc's own libraries, libstdc++/libgcc_s, OpenGL/EGL, ...).
shipped=$(find "$dir" \( -type f -o -type l \) -name '*.so*' -printf '%f\n' | sort -u)
needed=$(find "$dir" -type f -name '*.so*' -print0 | xargs -0 -r readelf -d 2>/dev/null \
    | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
echo "from the system: $(comm -23 <(echo "$needed") <(echo "$shipped") | tr '\n' ' ')"
