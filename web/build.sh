#!/bin/sh
# web/build.sh OUTDIR: assemble the dashboard that tickerd serves at /dashboard.
#
# Copies the page (index.html, dom.js, app.js, candles.js, tape.js, style.css, favicon.svg) and the chart library
# vendored from npm (pinned in package-lock.json) into OUTDIR; nothing is
# fetched at run time, so the page works with no internet. Idempotent: each
# run replaces OUTDIR's files with fresh copies.
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
out=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
uplot=$root/node_modules/uplot/dist

for f in uPlot.iife.min.js uPlot.min.css; do
	if [ ! -f "$uplot/$f" ]; then
		echo "web/build.sh: $uplot/$f is missing: run 'npm ci' (or 'make deps') first" >&2
		exit 1
	fi
done

mkdir -p "$out/vendor"
# Copy to a temporary name then rename, so a server reading OUTDIR while we
# run never sees a half-written file.
install_file() {
	cp "$1" "$2.tmp.$$"
	chmod 0644 "$2.tmp.$$"
	mv -f "$2.tmp.$$" "$2"
}
for f in index.html dom.js app.js candles.js tape.js style.css favicon.svg; do
	install_file "$here/$f" "$out/$f"
done
install_file "$uplot/uPlot.iife.min.js" "$out/vendor/uPlot.iife.min.js"
install_file "$uplot/uPlot.min.css" "$out/vendor/uPlot.min.css"
