#!/usr/bin/env bash
# A screenshot of the Snakemake report for README.md (docs/report.png): its menu of categories
# (one per protocol, and Training, Data, ...) beside one protocol's page of all tables:
#
#   .venv/bin/snakemake --report results/report.html
#   scripts/report_screenshot.sh results/report.html docs/report.png [CATEGORY]
#
# CATEGORY: the protocol whose tables are shown, by its title (default Seen-heard). Needs Chromium
# (Debian: apt-get install chromium) and the project's Python (PYTHON, default .venv/bin/python)
# to store the picture as a small palette PNG.
set -euo pipefail
report=${1:?usage: $0 REPORT.html OUT.png [CATEGORY]}
out=${2:?usage: $0 REPORT.html OUT.png [CATEGORY]}
category=${3:-Seen-heard}
python=${PYTHON:-.venv/bin/python}
chrome=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$chrome" ] || { echo "error: no chromium on PATH (Debian: apt-get install chromium)" >&2; exit 1; }
"$python" - "$report" "$category" <<'PY'
import json, sys

text = open(sys.argv[1], encoding="utf-8").read()
tag = '<script id="categories">'
if tag not in text:
    sys.exit(f"error: {sys.argv[1]} is not a Snakemake HTML report (snakemake --report REPORT.html)")
body = text.split(tag, 1)[1].split("</script>", 1)[0]
categories = json.loads(body.split("=", 1)[1].strip().removesuffix(";"))
if sys.argv[2] not in categories:
    sys.exit(f"error: the report has no category {sys.argv[2]!r}: give one of {', '.join(sorted(categories))}")
PY

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The report's own app shows the category's page of all tables (else its first entry).
{
  cat "$report"  # a script after the page's end: the browser adds it to the body
  cat <<JS
<script>
window.addEventListener("load", () => setTimeout(() => {
  const cat = $("$python" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$category");
  const files = Object.values(categories[cat]).flat();
  const page = files.find(f => f.endsWith("/tables.html")) || files[0];
  app.setView({navbarMode: "menu", category: cat, content: "html", contentPath: results[page].data_uri,
               resultPath: page});
}, 200));
</script>
JS
} > "$tmp/report.html"
"$chrome" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,860 \
  --virtual-time-budget=10000 --screenshot="$tmp/shot.png" "file://$tmp/report.html" 2>/dev/null
"$python" - "$tmp/shot.png" "$out" <<'PY'
import sys
from PIL import Image

Image.open(sys.argv[1]).convert("RGB").quantize(colors=128).save(sys.argv[2], optimize=True)
PY
echo "$out: $(du -k "$out" | cut -f1) KB"
