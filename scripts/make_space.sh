#!/usr/bin/env bash
# Assemble a ready-to-push Hugging Face Space (Docker SDK) from this repository:
#
#   bash scripts/make_space.sh OUT
#   hf upload YOUR-NAME/generative-model-lab OUT . --repo-type space
#
# OUT gets the app (streamlit_app.py, pages/, genlib/, .streamlit/, requirements.txt), the shipped
# checkpoints, the Dockerfile and .dockerignore, a .gitattributes that stores binary files with
# Git LFS/Xet, and a README.md: the Space's metadata (front matter, from space/README.md) and a
# short description. Files come from the working tree: tracked files plus new ones git does not
# ignore (never __pycache__, runs/ or .streamlit/secrets.toml).
#
# The metadata can be changed through the environment: SPACE_TITLE, SPACE_EMOJI, SPACE_COLOR_FROM,
# SPACE_COLOR_TO, SPACE_SHORT_DESCRIPTION (at most 60 characters), SPACE_SOURCE (the link back to
# the source; default: the git remote "origin"). app_port is the Dockerfile's PORT (7860).
# OUT must be empty, missing, or a folder this script made before (it is then replaced).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

if [ $# -ne 1 ] || [ "${1:0:1}" = "-" ]; then
  echo "usage: bash scripts/make_space.sh OUT   (OUT: a new or empty folder)" >&2
  exit 2
fi
OUT="$1"

case "$(cd "$(dirname "$OUT")" 2>/dev/null && pwd)/$(basename "$OUT")" in
  "$ROOT"|"$ROOT"/genlib*|"$ROOT"/pages*|"$ROOT"/checkpoints*|"$ROOT"/.git*)
    echo "make_space: OUT must not be the repository or one of the folders it copies" >&2; exit 2;;
esac
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  if [ -f "$OUT/Dockerfile" ] && grep -qs 'made by .*scripts/make_space.sh' "$OUT/README.md"; then
    find "$OUT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  else
    echo "make_space: $OUT is not empty and was not made by this script; choose another folder" >&2
    exit 1
  fi
fi
mkdir -p "$OUT"

# --- the files ------------------------------------------------------------------------------------
PATHS=(streamlit_app.py requirements.txt Dockerfile .dockerignore .streamlit genlib pages checkpoints)
for p in "${PATHS[@]}"; do
  [ -e "$p" ] || { echo "make_space: $p is missing from the repository" >&2; exit 1; }
done
list_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked and untracked-but-not-ignored files, as they are in the working tree now
    git ls-files -z --cached --others --exclude-standard -- "${PATHS[@]}"
  else
    find "${PATHS[@]}" -type f -print0
  fi
}
count=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue                      # deleted in the working tree but still in the index
  case "$f" in
    */__pycache__/*|*.pyc|*.pyo|.streamlit/secrets.toml|*/.*.tmp-*|.*.tmp-*) continue;;
  esac
  mkdir -p "$OUT/$(dirname "$f")"
  cp -p "$f" "$OUT/$f"
  count=$((count + 1))
done < <(list_files)

# --- README.md: metadata front matter, then the description -----------------------------------------
PORT_DEFAULT="$(sed -n 's/^ENV PORT=\([0-9][0-9]*\).*/\1/p' Dockerfile | head -1)"
[ -n "$PORT_DEFAULT" ] || { echo "make_space: no 'ENV PORT=...' line in the Dockerfile" >&2; exit 1; }
TITLE="${SPACE_TITLE:-Generative Model Lab}"
EMOJI="${SPACE_EMOJI:-🧪}"
COLOR_FROM="${SPACE_COLOR_FROM:-indigo}"
COLOR_TO="${SPACE_COLOR_TO:-purple}"
SHORT="${SPACE_SHORT_DESCRIPTION:-Train and compare autoencoders, GANs and diffusion on a CPU}"
SOURCE="${SPACE_SOURCE:-$(git remote get-url origin 2>/dev/null | sed 's#^git@github.com:#https://github.com/#; s#\.git$##' || true)}"
SOURCE="${SOURCE:-the repository this Space was made from}"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain -- "${PATHS[@]}" 2>/dev/null)" ]; then COMMIT="$COMMIT plus uncommitted changes"; fi

colors="red yellow green blue indigo purple pink gray"
for c in "$COLOR_FROM" "$COLOR_TO"; do
  case " $colors " in *" $c "*) ;; *) echo "make_space: colour '$c' is not one of: $colors" >&2; exit 1;; esac
done
if [ "$(printf %s "$SHORT" | wc -m)" -gt 60 ]; then
  echo "make_space: SPACE_SHORT_DESCRIPTION is over 60 characters" >&2; exit 1
fi
for v in "$TITLE" "$EMOJI" "$SHORT"; do
  case "$v" in *'"'*|*'\'*) echo "make_space: no quotes or backslashes in the metadata, please: $v" >&2; exit 1;; esac
done

TITLE="$TITLE" EMOJI="$EMOJI" COLOR_FROM="$COLOR_FROM" COLOR_TO="$COLOR_TO" APP_PORT="$PORT_DEFAULT" \
SHORT_DESCRIPTION="$SHORT" SOURCE="$SOURCE" COMMIT="$COMMIT" \
python3 - "$ROOT/space/README.md" "$OUT/README.md" <<'PY'
import os
import sys
text = open(sys.argv[1], encoding="utf-8").read()
for key in ("TITLE", "EMOJI", "COLOR_FROM", "COLOR_TO", "APP_PORT", "SHORT_DESCRIPTION", "SOURCE", "COMMIT"):
    text = text.replace(f"@{key}@", os.environ[key])
front = text.split("---")[1]
assert "@" not in front, "an unfilled placeholder in the front matter"
open(sys.argv[2], "w", encoding="utf-8").write(text)
PY

# Binary files go through Git LFS/Xet on the Hub. `hf upload` decides that by itself; this file is
# for anyone who pushes the folder with git instead.
cat > "$OUT/.gitattributes" <<'EOF'
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.png filter=lfs diff=lfs merge=lfs -text
*.gif filter=lfs diff=lfs merge=lfs -text
*.jpg filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
EOF

# --- report -------------------------------------------------------------------------------------------
size="$(du -sh "$OUT" | cut -f1)"
largest="$(find "$OUT" -type f -printf '%s %P\n' | sort -n | tail -1)"
big="$(find "$OUT" -type f -size +10M -printf '%P\n')"
echo "Space folder: $OUT ($count files from the repository + README.md, .gitattributes; $size)"
echo "  largest file: ${largest#* } ($(( ${largest%% *} / 1024 )) KiB)"
if [ -n "$big" ]; then
  echo "  over 10 MB (stored with Git LFS/Xet; hf upload does this itself):"; echo "$big" | sed 's/^/    /'
else
  echo "  no file is over 10 MB"
fi
echo "  metadata: sdk docker, app_port $PORT_DEFAULT, title '$TITLE'"
echo "Publish it (once: pip install -U huggingface_hub && hf auth login):"
echo "  hf upload YOUR-NAME/generative-model-lab $OUT . --repo-type space"
