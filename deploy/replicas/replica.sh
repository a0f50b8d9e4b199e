#!/bin/sh
# One ComfyGate replica of deploy/replicas/Procfile: sh replica.sh NAME PORT
# Its own port and DATA_DIR (scratch files and its ComfyUI client id), the Procfile's Redis
# and S3, every other setting from replicas.env (the same for every replica).
# When `comfygate serve` ends (a SIGTERM to roll it, a crash, a SIGKILL) it is started again
# after RESTART_DELAY_S, with the same DATA_DIR, as systemd's Restart= does for
# deploy/comfygate-replica@.service: honcho alone would stop every process when one ends.
set -u
name=$1
port=$2
data_dir="$STATE_DIR/replica-$name"
mkdir -p "$data_dir"
export COMFYGATE_REDIS_URL="${COMFYGATE_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
export COMFYGATE_S3_ENDPOINT_URL="${COMFYGATE_S3_ENDPOINT_URL:-http://127.0.0.1:$S3_PORT}"
while :; do
    "$GATEWAY" serve --port "$port" --data-dir "$data_dir"
    echo "replica-$name: comfygate serve ended (exit code $?); starting it again in ${RESTART_DELAY_S}s"
    sleep "$RESTART_DELAY_S"
done
