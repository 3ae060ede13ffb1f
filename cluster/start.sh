#!/usr/bin/env bash
# Start a local Ray head for the playground (what `playground up` runs first).
#
#   cluster/start.sh            # then: serve deploy configs/serve/local.yaml
#
# Logical CPUs: each vLLM replica takes 2 (actor + engine bundle), the OpenAI ingress 1,
# the playground API and a Ray Train job must all be schedulable on a 2-core laptop.
# Logical CPUs are Ray's bookkeeping, not cores, so we declare more than we have.
set -euo pipefail
: "${PLAYGROUND_WORKSPACE:=$(cd "$(dirname "$0")/.." && pwd)/workspace}"
export PLAYGROUND_WORKSPACE   # Serve replicas and Ray jobs inherit it from the head
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"   # keep Ray's token check; clients need the same mode
# Serve's HTTP port is HAProxy, and replicas answer HTTP themselves (services/serve_env.py).
export RAY_SERVE_ENABLE_HA_PROXY="${RAY_SERVE_ENABLE_HA_PROXY:-1}"
# No --node-ip-address 127.0.0.1: Ray turns a loopback node IP into the machine's IP anyway.
# Ray's own ports listen beyond loopback whatever we pass (docs/concepts/serving.md, "Ports and security"); ours do not.
exec ray start --head \
  --num-cpus "${PLAYGROUND_NUM_CPUS:-8}" \
  --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "${PLAYGROUND_DASHBOARD_PORT:-8265}" \
  --disable-usage-stats "$@"
