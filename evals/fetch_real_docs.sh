#!/usr/bin/env bash
# Reproduce evals/realdocs/{dev,tune}/: Dutch manuals from Debian packages.
#
#   dev  (report-only): debian-edu-bookworm-manual.pdf, rosegarden-manual.pdf, audacity-manual.pdf
#   tune (refusal fit): debian-edu-itil-manual.pdf, web.nl.pdf (LilyPond website manual),
#                       debian-faq.nl.pdf (Debian FAQ, shipped gzipped)
#
# Reader families (each its own corpus folder; tuning questions in evals/reader-*.jsonl, a
# held-out dev split per family in evals/*-dev.jsonl):
#   aptitude/           the aptitude user manual, HTML pages (aptitude-doc-nl)
#   gimp/               GIMP help, the "gimp-using-*" pages, HTML (gimp-help-nl)
#   lilypond-learning/  LilyPond learning manual, PDF, 204 pages (lilypond-doc-pdf-nl)
#   libreoffice/        LibreOffice help, text/shared/guide pages, HTML (libreoffice-help-nl):
#                       the UNSEEN-DOCUMENT dev split; no tuning question touches it
#
# Downloads the packages with `apt-get download` (no root needed, nothing is
# installed), unpacks them with `dpkg-deb -x` in a temporary directory and copies
# the PDFs. Idempotent: files already present with the same content are left alone.
# Runs `apt-get update` only when the first download fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/realdocs"
packages=(lilypond-doc-pdf-nl debian-edu-doc-nl debian-edu-doc-legacy-nl debian-faq-nl aptitude-doc-nl gimp-help-nl
          libreoffice-help-nl)
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

copy_html() {  # copy_html <folder in the packages> <name pattern> <split>: a set of HTML pages
    local dir="$tmp/x/$1" pattern="$2" split="$3" n=0
    mkdir -p "$out/$split"
    for src in "$dir"/$pattern; do
        [ -f "$src" ] || continue
        cmp -s "$src" "$out/$split/$(basename "$src")" 2>/dev/null || cp "$src" "$out/$split/"
        n=$((n + 1))
    done
    if [ "$n" -eq 0 ]; then
        echo "ERROR: no $pattern in $1" >&2
        exit 1
    fi
    echo "pages      $split/ ($n HTML files)"
}

for pdf in "${dev_pdfs[@]}"; do copy "$pdf" dev; done
for pdf in "${tune_pdfs[@]}"; do copy "$pdf" tune; done
copy learning.nl.pdf lilypond-learning
copy_html usr/share/doc/aptitude/html/nl 'ch*.html' aptitude
copy_html usr/share/gimp/2.0/help/nl 'gimp-using-*.html' gimp
copy_html usr/share/libreoffice/help/nl/text/shared/guide '*.html' libreoffice
echo "Done: $out/{dev,tune,aptitude,gimp,lilypond-learning,libreoffice}"
