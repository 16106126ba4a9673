#!/usr/bin/env bash
# Smoke-test the hosted demo's container the way a Space runs it, under the smallest hosts' limits.
#
#   bash scripts/smoke_container.sh [--no-cache] [--context space|repo] [--no-tabs] [--strict]
#
# 1. Base image: genlib-base:bookworm, a Debian bookworm made with debootstrap + `docker import`
#    (no registry needed; made once, when missing). The host's extra CA certificates
#    (/usr/local/share/ca-certificates/*.crt, e.g. an egress proxy's) go into this local base only,
#    with PIP_CERT pointing at them; the Dockerfile knows nothing about them.
# 2. Build: the folder scripts/make_space.sh makes (what gets published; --context repo builds the
#    repository itself), with --build-arg BASE=genlib-base:bookworm. When the CPU torch wheel is
#    on this machine ($SMOKE_WHEELS, default /opt/wheels) it is copied into the context's wheels/
#    and the build uses no PyTorch index (--build-arg TORCH_INDEX=); otherwise the Dockerfile's
#    default index. Checks: torch is the CPU build, no nvidia/CUDA package, the user is UID 1000.
# 3. For each memory limit: run the container with --memory LIMIT --cpus $SMOKE_CPUS (default 2),
#    wait until Docker reports it healthy, walk every page and tab in Chromium
#    (scripts/walk_pages.py), and record memory: `docker stats` and the cgroup's usage sampled every
#    second, and the cgroup's own peak. $SMOKE_LIMITS (default 2700m, Community Cloud's largest
#    container) must pass; $SMOKE_TRY_LIMITS (default 1g) is run and reported, and must pass only
#    with --strict. That run also sets PORT=8501, so the port really comes from $PORT.
# 4. A summary; exit status 1 when anything failed.
#
# Needs: docker (Debian: apt-get install docker.io), debootstrap when the base is missing
# (apt-get install debootstrap; run as root or with sudo), a Python with Playwright
# (requirements-test.txt; default .venv/bin/python, or $PYTHON) and Debian's chromium.
# The first build downloads about 1 GB of wheels from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

IMAGE="${SMOKE_IMAGE:-genlib-lab:smoke}"
BASE_IMAGE="${SMOKE_BASE:-genlib-base:bookworm}"
ROOTFS="${GENLIB_ROOTFS:-/tmp/genlib-rootfs}"
WHEELS="${SMOKE_WHEELS:-/opt/wheels}"
LIMITS="${SMOKE_LIMITS:-2700m}"          # must pass
TRY_LIMITS="${SMOKE_TRY_LIMITS-1g}"     # reported, and required only with --strict
CPUS="${SMOKE_CPUS:-2}"
HEALTH_TIMEOUT="${SMOKE_HEALTH_TIMEOUT:-180}"
CONTEXT=space
NO_CACHE=""
STRICT=0
WALK_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-cache) NO_CACHE="--no-cache";;
    --context) CONTEXT="$2"; shift;;
    --no-tabs) WALK_ARGS+=(--no-tabs);;
    --strict) STRICT=1;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2;;
  esac
  shift
done
case "$CONTEXT" in space|repo) ;; *) echo "--context is space or repo" >&2; exit 2;; esac
if [ "$STRICT" = 1 ]; then LIMITS="$LIMITS $TRY_LIMITS"; TRY_LIMITS=""; fi
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

WORK="$(mktemp -d /tmp/genlib-smoke.XXXXXX)"
CONTAINERS=()
SAMPLER=""
COPIED_WHEEL=""
MADE_WHEELS_DIR=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  [ -n "$COPIED_WHEEL" ] && rm -f "$COPIED_WHEEL" || true
  [ -n "$MADE_WHEELS_DIR" ] && rmdir "$MADE_WHEELS_DIR" 2>/dev/null || true
  if [ "${FAILED:-1}" = 0 ]; then rm -rf "$WORK"; else echo "(logs kept in $WORK)"; fi
}
trap cleanup EXIT
log() { echo "== $*"; }
die() { echo "smoke: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
human() { python3 -c "import sys; b=float(sys.argv[1]); print(f'{b/2**30:.2f} GiB' if b >= 2**30 else f'{b/2**20:.0f} MiB')" "$1"; }

# --- 0. tools -----------------------------------------------------------------------------------------
docker info >/dev/null 2>&1 || die "docker does not answer: install docker.io and start dockerd (see README, 'Deploy the hosted demo')"
"$PYTHON" -c "import playwright" 2>/dev/null || die "$PYTHON has no Playwright: $PYTHON -m pip install -r requirements-test.txt"
[ -n "${GENLIB_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
  || die "Chromium is missing: apt-get install chromium (or set GENLIB_CHROMIUM)"

# Community Cloud installs the Pipfile, not requirements.txt: they must say the same
PIPFILE_STATE="$(python3 scripts/cloud_deps.py 2>&1)" && PIPFILE_OK=1 || PIPFILE_OK=0
echo "   $PIPFILE_STATE"

# --- 1. the base image ------------------------------------------------------------------------------
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE exists"
else
  if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    log "debootstrap: Debian bookworm (minbase, python3, python3-venv, ca-certificates) into $ROOTFS"
    $SUDO nice debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$ROOTFS" http://deb.debian.org/debian > "$WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
  fi
  log "docker import $ROOTFS -> $BASE_IMAGE-raw (without apt's package cache and lists)"
  $SUDO tar -C "$ROOTFS" --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' \
      --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -c . \
    | nice docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE-raw" >/dev/null
  mkdir -p "$WORK/base"
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    log "adding this host's CA certificates (/usr/local/share/ca-certificates) to the local base only"
    cp /usr/local/share/ca-certificates/*.crt "$WORK/base/"
    printf '%s\n' "FROM $BASE_IMAGE-raw" 'COPY *.crt /usr/local/share/ca-certificates/' \
      'RUN update-ca-certificates >/dev/null' 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' > "$WORK/base/Dockerfile"
    docker build -q -t "$BASE_IMAGE" "$WORK/base" > "$WORK/base.log" 2>&1 || { cat "$WORK/base.log"; die "base build failed"; }
  else
    docker tag "$BASE_IMAGE-raw" "$BASE_IMAGE"
  fi
fi

# --- 2. build -------------------------------------------------------------------------------------
WHEEL="$(ls "$WHEELS"/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -1 || true)"
if [ "$CONTEXT" = space ]; then
  CTX="$WORK/space"
  bash scripts/make_space.sh "$CTX" > "$WORK/make_space.log"
  log "context: the Space folder from scripts/make_space.sh ($CTX)"
else
  CTX="$ROOT"
  log "context: the repository ($CTX)"
fi
BUILD_ARGS=(--build-arg "BASE=$BASE_IMAGE")
if [ -n "$WHEEL" ]; then
  if [ ! -d "$CTX/wheels" ]; then mkdir "$CTX/wheels"; [ "$CONTEXT" = repo ] && MADE_WHEELS_DIR="$CTX/wheels"; fi
  if [ ! -e "$CTX/wheels/$(basename "$WHEEL")" ]; then
    cp "$WHEEL" "$CTX/wheels/"
    [ "$CONTEXT" = repo ] && COPIED_WHEEL="$CTX/wheels/$(basename "$WHEEL")"   # removed again at exit
  fi
  BUILD_ARGS+=(--build-arg "TORCH_INDEX=")
  TORCH_FROM="the local wheel $(basename "$WHEEL") (no PyTorch index)"
else
  TORCH_FROM="the Dockerfile's TORCH_INDEX (download.pytorch.org)"
fi
log "docker build -t $IMAGE ${BUILD_ARGS[*]} $NO_CACHE   (torch from $TORCH_FROM; log: $WORK/build.log)"
t0="$(now)"
if ! nice docker build $NO_CACHE "${BUILD_ARGS[@]}" -t "$IMAGE" "$CTX" > "$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log"; die "docker build failed"
fi
BUILD_S="$(secs "$t0" "$(now)")"
CACHED="$(grep -c 'Using cache' "$WORK/build.log" || true)"
SIZE_B="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
log "built in $BUILD_S s ($CACHED cached steps), image $(human "$SIZE_B")"

INSPECT="$(docker run --rm --entrypoint sh "$IMAGE" -c '
  echo "uid=$(id -u)"
  echo "nvidia_pkgs=$(pip list --format=freeze 2>/dev/null | grep -ciE "^(nvidia|cuda|triton)" || true)"
  echo "cuda_libs=$(find / -xdev \( -name "libcudart*" -o -name "libcudnn*" -o -name "libcublas*" -o -name "libnccl*" -o -name "libnv*.so*" \) 2>/dev/null | wc -l)"
  python -c "import torch; print(\"torch=\" + torch.__version__, \"cuda=\" + str(torch.version.cuda))"
  echo "demo=${GENLIB_DEMO:-}" "port=${PORT:-}"
  du -sm /opt/venv | cut -f1 | sed "s/^/venv_mb=/"')"
echo "$INSPECT" | sed 's/^/   /'
get() { echo "$INSPECT" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
IMAGE_OK=1
[ "$(get uid)" = 1000 ] || { echo "   FAILED: the container does not run as UID 1000"; IMAGE_OK=0; }
[ "$(get nvidia_pkgs)" = 0 ] && [ "$(get cuda_libs)" = 0 ] && [ "$(get cuda)" = None ] \
  || { echo "   FAILED: CUDA packages or libraries are in the image"; IMAGE_OK=0; }
[ "$(get demo)" = 1 ] || { echo "   FAILED: GENLIB_DEMO is not 1 in the image"; IMAGE_OK=0; }
docker image inspect -f '{{json .Config.Healthcheck}}' "$IMAGE" | grep -q _stcore/health \
  || { echo "   FAILED: no HEALTHCHECK on /_stcore/health"; IMAGE_OK=0; }

# --- 3. run under each limit ----------------------------------------------------------------------------
# report.py turns one run's files into its summary lines: the pages, the memory after each page
# (docker stats samples, page cache not counted) and the peak.
cat > "$WORK/report.py" <<'PY'
import json, re, sys
work, limit = sys.argv[1], sys.argv[2]
units = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 1e3, "mb": 1e6, "gb": 1e9}
def human(b):
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"
samples = []  # (time, docker stats usage, cgroup usage incl. page cache)
for line in open(f"{work}/stats-{limit}.txt"):
    m = re.match(r"(\d+(?:\.\d+)?) ([\d.]+)\s*([KMG]?i?B)\s*/.*?\|\s*(\d*)", line, re.I)
    if m:
        samples.append((float(m.group(1)), float(m.group(2)) * units[m.group(3).lower()], int(m.group(4) or 0)))
try:
    res = json.load(open(f"{work}/walk-{limit}.json"))["results"]
except (OSError, ValueError):
    res = []
pages = [r for r in res if " > " not in r["step"]]
tabs = [r for r in res if " > " in r["step"]]
bad = [r for r in tabs if not r["ok"]]
line = ", ".join(f"{r['step'].split(' (')[0]} {'OK' if r['ok'] else 'FAILED'} ({r['seconds']:.0f} s)" for r in pages)
print("pages=" + (line + f"; tabs {len(tabs) - len(bad)}/{len(tabs)} OK" + "".join(f"; FAILED {r['step']}" for r in bad)
                  if res else "walk did not finish"))
print("first=" + (f"{res[0]['seconds']:.1f} s" if res else "n/a"))
# memory at the end of each page's last step
after, begin = [], 0.0
for i, r in enumerate(res):
    last_of_page = i + 1 == len(res) or " > " not in res[i + 1]["step"]
    if last_of_page:
        seen = [u for t, u, _ in samples if t <= r["end"] + 1]
        if seen:
            after.append(f"{r['step'].split(' (')[0].split(' > ')[0]} {human(seen[-1])}")
print("after=" + (", ".join(after) or "n/a"))
print("stats_peak=" + (human(max(u for _, u, _ in samples)) if samples else "n/a"))
print("cgroup_sampled_peak=" + (human(max(c for _, _, c in samples)) if any(c for *_, c in samples) else "n/a"))
for r in res:
    for e in r["errors"]:
        print(f"error={r['step']}: {e}")
PY
CG_USAGE='cat /sys/fs/cgroup/memory.current 2>/dev/null || cat /sys/fs/cgroup/memory/memory.usage_in_bytes 2>/dev/null'
CG_PEAK='cat /sys/fs/cgroup/memory.peak 2>/dev/null || cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null'
CG_HITS='cat /sys/fs/cgroup/memory/memory.failcnt 2>/dev/null || sed -n "s/^max //p" /sys/fs/cgroup/memory.events 2>/dev/null'
declare -A R_HEALTHY R_REPORT R_PEAK R_OOM R_PORT R_HITS R_OK
RUN_OK=1
for LIMIT in $LIMITS $TRY_LIMITS; do
  NAME="genlib-smoke-$$-$LIMIT"
  PORT_IN=7860; ENV_ARGS=()
  case " $TRY_LIMITS " in *" $LIMIT "*) PORT_IN=8501; ENV_ARGS=(-e PORT=8501);; esac   # PORT really moves it
  R_PORT[$LIMIT]=$PORT_IN; R_OK[$LIMIT]=1
  log "run: --memory $LIMIT --cpus $CPUS, PORT=$PORT_IN"
  t0="$(now)"
  docker run -d --name "$NAME" --memory "$LIMIT" --memory-swap "$LIMIT" --cpus "$CPUS" \
    --health-interval 2s "${ENV_ARGS[@]}" -p "127.0.0.1::$PORT_IN" "$IMAGE" >/dev/null
  CONTAINERS+=("$NAME")
  # one sample a second: time, docker stats' usage (page cache not counted) | the cgroup's usage (counted)
  (while [ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" = true ]; do
     u="$(docker stats --no-stream --format '{{.MemUsage}}' "$NAME" 2>/dev/null || true)"
     c="$(docker exec "$NAME" sh -c "$CG_USAGE" 2>/dev/null || true)"
     echo "$(date +%s.%N) $u | $c"; sleep 1; done) > "$WORK/stats-$LIMIT.txt" &
  SAMPLER=$!
  status=starting
  while [ "$status" != healthy ]; do
    status="$(docker inspect -f '{{if .State.Running}}{{.State.Health.Status}}{{else}}exited{{end}}' "$NAME")"
    [ "$status" = exited ] && break
    [ "$(secs "$t0" "$(now)" | cut -d. -f1)" -ge "$HEALTH_TIMEOUT" ] && { status=timeout; break; }
    sleep 0.5
  done
  if [ "$status" != healthy ]; then
    R_HEALTHY[$LIMIT]="not healthy ($status)"; R_OK[$LIMIT]=0
  else
    R_HEALTHY[$LIMIT]="$(secs "$t0" "$(now)") s"
    HOSTPORT="$(docker port "$NAME" "$PORT_IN/tcp" | head -1 | sed 's/.*://')"
    log "healthy after ${R_HEALTHY[$LIMIT]}; walking the pages at http://127.0.0.1:$HOSTPORT"
    "$PYTHON" scripts/walk_pages.py --url "http://127.0.0.1:$HOSTPORT" --json "$WORK/walk-$LIMIT.json" \
      "${WALK_ARGS[@]}" || R_OK[$LIMIT]=0
  fi
  PEAK="$(docker exec "$NAME" sh -c "$CG_PEAK" 2>/dev/null || true)"
  R_HITS[$LIMIT]="$(docker exec "$NAME" sh -c "$CG_HITS" 2>/dev/null || echo '?')"
  kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""
  R_OOM[$LIMIT]="$(docker inspect -f '{{.State.OOMKilled}}' "$NAME" 2>/dev/null || echo '?')"
  [ "${R_OOM[$LIMIT]}" = false ] || R_OK[$LIMIT]=0
  R_REPORT[$LIMIT]="$(python3 "$WORK/report.py" "$WORK" "$LIMIT")"
  if [ -n "$PEAK" ]; then R_PEAK[$LIMIT]="$(human "$PEAK")"
  else R_PEAK[$LIMIT]="$(echo "${R_REPORT[$LIMIT]}" | sed -n 's/^cgroup_sampled_peak=//p') (last sample; the container is gone)"; fi
  docker logs "$NAME" > "$WORK/container-$LIMIT.log" 2>&1 || true
  if grep -q "Traceback" "$WORK/container-$LIMIT.log"; then
    echo "   the server logged a traceback (see $WORK/container-$LIMIT.log):"
    grep -B2 -A12 "Traceback" "$WORK/container-$LIMIT.log" | head -40 | sed 's/^/   | /'
  fi
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  case " $LIMITS " in *" $LIMIT "*) [ "${R_OK[$LIMIT]}" = 1 ] || RUN_OK=0;; esac
done

# --- 4. summary -----------------------------------------------------------------------------------------
FAILED=1; [ "$IMAGE_OK" = 1 ] && [ "$RUN_OK" = 1 ] && [ "$PIPFILE_OK" = 1 ] && FAILED=0
field() { echo "${R_REPORT[$1]}" | sed -n "s/^$2=//p"; }
echo
echo "======================== container smoke summary ========================"
echo "image          $IMAGE: $(human "$SIZE_B") (base $BASE_IMAGE; /opt/venv $(get venv_mb) MB)"
echo "build          $BUILD_S s ($CACHED cached steps${NO_CACHE:+, --no-cache}); torch from $TORCH_FROM"
echo "Pipfile        $PIPFILE_STATE (Community Cloud's dependency file)"
echo "image checks   torch $(get torch), CUDA $(get cuda), nvidia/CUDA packages $(get nvidia_pkgs), CUDA libraries $(get cuda_libs), UID $(get uid), GENLIB_DEMO=$(get demo)"
for LIMIT in $LIMITS $TRY_LIMITS; do
  kind=required; case " $TRY_LIMITS " in *" $LIMIT "*) kind="tried, not required";; esac
  verdict=OK; [ "${R_OK[$LIMIT]}" = 1 ] || verdict=FAILED
  echo "--memory $LIMIT --cpus $CPUS, PORT=${R_PORT[$LIMIT]} ($kind): $verdict"
  echo "  start to healthy   ${R_HEALTHY[$LIMIT]} (first page drawn $(field "$LIMIT" first) later)"
  echo "  pages              $(field "$LIMIT" pages)"
  echo "  memory after page  $(field "$LIMIT" after)"
  echo "  peak memory        ${R_PEAK[$LIMIT]} (cgroup peak, page cache included); $(field "$LIMIT" stats_peak) (docker stats, 1 s samples)"
  echo "  limit reached      ${R_HITS[$LIMIT]} times (the kernel reclaimed memory); OOM killed: ${R_OOM[$LIMIT]}"
  field "$LIMIT" error | sed 's/^/  error              /'
done
if [ "$FAILED" = 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
exit "$FAILED"
