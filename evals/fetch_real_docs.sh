#!/usr/bin/env bash
# Reproduce evals/realdocs/{dev,tune}/: Dutch manuals from Debian packages.
#
#   dev  (report-only): debian-edu-bookworm-manual.pdf, rosegarden-manual.pdf, audacity-manual.pdf
#   tune (refusal fit): debian-edu-itil-manual.pdf, web.nl.pdf (LilyPond website manual),
#                       debian-faq.nl.pdf (Debian FAQ, shipped gzipped)
#
# Downloads the packages with `apt-get download` (no root needed, nothing is
# installed), unpacks them with `dpkg-deb -x` in a temporary directory and copies
# the PDFs. Idempotent: files already present with the same content are left alone.
# Runs `apt-get update` only when the first download fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/realdocs"
packages=(lilypond-doc-pdf-nl debian-edu-doc-nl debian-edu-doc-legacy-nl debian-faq-nl)
dev_pdfs=(debian-edu-bookworm-manual.pdf rosegarden-manual.pdf audacity-manual.pdf)
tune_pdfs=(debian-edu-itil-manual.pdf web.nl.pdf debian-faq.nl.pdf)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"  # apt-get download runs as _apt when it can write here

echo "Downloading ${packages[*]} into $tmp"
if ! (cd "$tmp" && apt-get download "${packages[@]}"); then
    echo "apt-get download failed; running apt-get update and trying again"
    if [ "$(id -u)" -eq 0 ]; then apt-get update; else sudo apt-get update; fi
    (cd "$tmp" && apt-get download "${packages[@]}")
fi

mkdir -p "$tmp/x"
for deb in "$tmp"/*.deb; do
    echo "Unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$tmp/x"
done
find "$tmp/x" -name '*.pdf.gz' -exec gunzip -f {} +  # the FAQ ships its PDF gzipped

copy() {  # copy <pdf name> <split>
    local name="$1" split="$2" src
    src="$(find "$tmp/x" -type f -name "$name" | head -n 1)"
    if [ -z "$src" ]; then
        echo "ERROR: $name is not in the downloaded packages" >&2
        exit 1
    fi
    mkdir -p "$out/$split"
    if [ -f "$out/$split/$name" ] && cmp -s "$src" "$out/$split/$name"; then
        echo "unchanged  $split/$name"
    else
        cp "$src" "$out/$split/$name"
        echo "copied     $split/$name ($(stat -c %s "$out/$split/$name") bytes)"
    fi
}

for pdf in "${dev_pdfs[@]}"; do copy "$pdf" dev; done
for pdf in "${tune_pdfs[@]}"; do copy "$pdf" tune; done
echo "Done: $out/dev and $out/tune"
