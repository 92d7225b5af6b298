#!/usr/bin/env bash
# Smoke test of the real Dockerfile: build the image, then check inside a container that
#   1. `python -m bot check` passes with the tiny fixture models mounted as CAPTION_MODEL and
#      SEARCH_MODEL (and never prints the token),
#   2. the bot runs as a non-root user,
#   3. the health check turns healthy against the test suite's Discord-compatible server,
#   4. `docker stop` ends the bot cleanly (exit status 0) within 10 s, removing the heartbeat.
# Needs only this repository and a Docker engine; slow (minutes), so not part of .ci/run.
# Contributor notes: docs/docker.md.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/docker-smoke.sh [options]

  --image NAME         tag for the built image (default glimpse:smoke)
  --base-image NAME    BASE_IMAGE for the build (default: the Dockerfile's python:3.11-slim)
  --make-base          if --base-image does not exist, make it: debootstrap Debian bookworm
                       (python3, python3-venv, ca-certificates) and `docker import` it;
                       needs root and debootstrap, for hosts that cannot pull images
  --ca-bundle FILE     CA bundle for a TLS-intercepting proxy, given to pip as PIP_CERT
  --wheels DIR         a local wheel folder, given to pip as PIP_FIND_LINKS; with it, torch
                       is taken from the folder or the package index, not PyTorch's index
  --index-url URL      PIP_INDEX_URL for the build (a private mirror)
  --torch-index-url U  TORCH_INDEX_URL for the build
  --build-arg A=B      any other build argument (repeatable)
  --keep               leave the containers and the data volume for inspection
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=glimpse:smoke
BASE_IMAGE=""
MAKE_BASE=0
CA_BUNDLE=""
WHEELS=""
KEEP=0
BUILD_ARGS=()
TORCH_INDEX_SET=0
while [ $# -gt 0 ]; do
    case "$1" in
        --image) IMAGE=$2; shift 2 ;;
        --base-image) BASE_IMAGE=$2; shift 2 ;;
        --make-base) MAKE_BASE=1; shift ;;
        --ca-bundle) CA_BUNDLE=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --index-url) BUILD_ARGS+=(--build-arg "PIP_INDEX_URL=$2"); shift 2 ;;
        --torch-index-url) BUILD_ARGS+=(--build-arg "TORCH_INDEX_URL=$2"); TORCH_INDEX_SET=1; shift 2 ;;
        --build-arg) BUILD_ARGS+=(--build-arg "$2"); shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

SUFFIX="smoke-$$"
BOT="glimpse-bot-$SUFFIX"
FAKE="glimpse-fake-discord-$SUFFIX"
VOLUME="glimpse-data-$SUFFIX"
CONTEXT=$(mktemp -d)
TOKEN_FOR_CHECK="check-token-$RANDOM$RANDOM.must-not-be-printed"

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'SMOKE FAILED: %s\n' "$*" >&2; exit 1; }

FIXTURES=""
cleanup() {
    rm -rf "$CONTEXT" ${FIXTURES:+"$FIXTURES"}
    if [ "$KEEP" = 0 ]; then
        docker rm -f "$BOT" "$FAKE" >/dev/null 2>&1 || true
        docker volume rm "$VOLUME" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

docker info >/dev/null 2>&1 || fail "no Docker engine answers (is dockerd running?)"

# --- the base image ---------------------------------------------------------------------------
if [ -n "$BASE_IMAGE" ] && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if [ "$MAKE_BASE" = 0 ]; then
        echo "note: $BASE_IMAGE is not local; the build will try to pull it (--make-base makes it)"
    else
        step "making the base image $BASE_IMAGE with debootstrap"
        command -v debootstrap >/dev/null || fail "--make-base needs debootstrap (apt-get install debootstrap)"
        ROOTFS=$(mktemp -d)
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$ROOTFS" http://deb.debian.org/debian >/dev/null
        tar -C "$ROOTFS" -c . | docker import - "$BASE_IMAGE" >/dev/null
        rm -rf "$ROOTFS"
    fi
fi
[ -n "$BASE_IMAGE" ] && BUILD_ARGS+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")

# --- the build context: what .dockerignore lets through, plus the optional host inputs --------
cp -a "$ROOT/Dockerfile" "$ROOT/.dockerignore" "$ROOT/pyproject.toml" "$ROOT/bot" "$ROOT/cogs" \
    "$CONTEXT/"
if [ -n "$CA_BUNDLE" ]; then
    [ -f "$CA_BUNDLE" ] || fail "--ca-bundle $CA_BUNDLE is not a file"
    mkdir -p "$CONTEXT/docker-local"
    cp "$CA_BUNDLE" "$CONTEXT/docker-local/ca.crt"
    BUILD_ARGS+=(--build-arg PIP_CERT=/build/ca.crt)
fi
if [ -n "$WHEELS" ]; then
    [ -d "$WHEELS" ] || fail "--wheels $WHEELS is not a folder"
    mkdir -p "$CONTEXT/docker-local/wheels"
    cp "$WHEELS"/*.whl "$CONTEXT/docker-local/wheels/"
    BUILD_ARGS+=(--build-arg PIP_FIND_LINKS=/build/wheels)
    [ "$TORCH_INDEX_SET" = 1 ] || BUILD_ARGS+=(--build-arg TORCH_INDEX_URL=)
fi

step "building $IMAGE"
started=$(date +%s)
# Host networking: a proxy or mirror reachable as localhost on the host is reachable here too.
docker build --network host --tag "$IMAGE" "${BUILD_ARGS[@]}" "$CONTEXT"
build_s=$(( $(date +%s) - started ))
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
echo "built in ${build_s} s; image size $(( size / 1000000 )) MB ($size bytes)"

# A copy readable by the image's user: save_pretrained leaves weights readable by owner only.
FIXTURES=$(mktemp -d)
cp -r "$ROOT/tests/fixtures/models/." "$FIXTURES/"
chmod -R a+rX "$FIXTURES"
MODELS=(
    -v "$FIXTURES:/fixtures:ro"
    -e CAPTION_MODEL=/fixtures/blip-tiny-shapes
    -e SEARCH_MODEL=/fixtures/clip-tiny-shapes
    -e HF_HUB_OFFLINE=1
)

# --- 1. python -m bot check -------------------------------------------------------------------
step "python -m bot check inside the container"
docker volume create "$VOLUME" >/dev/null
if ! report=$(docker run --rm "${MODELS[@]}" -v "$VOLUME:/data" \
        -e DISCORD_TOKEN="$TOKEN_FOR_CHECK" "$IMAGE" check 2>&1); then
    echo "$report"
    fail "python -m bot check failed inside the container"
fi
echo "$report"
grep -q '^check passed' <<<"$report" || fail "the check report does not end in 'check passed'"
if grep -qF "$TOKEN_FOR_CHECK" <<<"$report"; then fail "the check printed the token"; fi

# --- the local Discord-compatible server, from the test suite, run by the same image ----------
step "starting the local Discord-compatible server"
docker run -d --name "$FAKE" --network host \
    -v "$ROOT/tests:/app/tests:ro" -v "$ROOT/scripts:/app/scripts:ro" \
    --entrypoint python "$IMAGE" scripts/fake_discord_server.py >/dev/null
server=""
for _ in $(seq 60); do
    server=$(docker logs "$FAKE" 2>/dev/null | grep -m1 '^{' || true)
    [ -n "$server" ] && break
    sleep 0.5
done
[ -n "$server" ] || { docker logs "$FAKE"; fail "the fake Discord server did not start"; }
field() { sed -E "s/.*\"$1\": \"([^\"]*)\".*/\1/" <<<"$server"; }
API_URL=$(field api_url)
GATEWAY_URL=$(field gateway_url)
TOKEN=$(field token)
echo "listening at $API_URL"

# --- 2. and 3. the bot: non-root, turning healthy ----------------------------------------------
step "running the bot until its health check turns healthy"
docker run -d --name "$BOT" --network host "${MODELS[@]}" -v "$VOLUME:/data" \
    -e DISCORD_TOKEN="$TOKEN" -e DISCORD_API_URL="$API_URL" -e DISCORD_GATEWAY_URL="$GATEWAY_URL" \
    --health-interval 2s --health-start-period 2s "$IMAGE" >/dev/null
started=$(date +%s)
health=""
while [ $(( $(date +%s) - started )) -lt 120 ]; do
    health=$(docker inspect --format '{{.State.Health.Status}}' "$BOT")
    state=$(docker inspect --format '{{.State.Status}}' "$BOT")
    [ "$health" = healthy ] && break
    [ "$state" = running ] || break
    sleep 1
done
if [ "$health" != healthy ]; then
    docker logs "$BOT" 2>&1 | tail -40
    docker inspect --format '{{json .State.Health}}' "$BOT"
    fail "the container did not turn healthy (health: $health, state: $state)"
fi
echo "healthy after $(( $(date +%s) - started )) s"
users=$(docker top "$BOT" -eo pid,uid,args | tail -n +2)
echo "$users"
awk '$2 == 0 { found = 1 } END { exit !found }' <<<"$users" \
    && fail "a process in the container runs as root"
grep -q 'python -m bot' <<<"$users" || fail "the bot's process is not running"

# --- 4. docker stop ---------------------------------------------------------------------------
step "docker stop"
started=$(date +%s.%N)
docker stop --time 10 "$BOT" >/dev/null
elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
status=$(docker inspect --format '{{.State.ExitCode}}' "$BOT")
logs=$(docker logs "$BOT" 2>&1)
echo "stopped in ${elapsed} s with exit status $status"
[ "$status" = 0 ] || { echo "$logs" | tail -40; fail "exit status $status, not 0"; }
awk -v e="$elapsed" 'BEGIN { exit !(e < 10) }' || fail "took ${elapsed} s to stop"
if grep -q Traceback <<<"$logs"; then echo "$logs" | tail -40; fail "a traceback in the log"; fi
if grep -qF "$TOKEN" <<<"$logs"; then fail "the log shows the token"; fi
left=$(docker run --rm -v "$VOLUME:/data" --entrypoint ls "$IMAGE" -A /data)
if grep -qx heartbeat <<<"$left"; then fail "the heartbeat file outlived a clean stop"; fi

printf '\nSMOKE PASSED: image %s, %s MB, built in %s s; stopped in %s s\n' \
    "$IMAGE" "$(( size / 1000000 ))" "$build_s" "$elapsed"
