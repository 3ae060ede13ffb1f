"""The HTTP way of `playground bench serve` (benchmarks/serve_http.py `_measure_http`) against a real
uvicorn server that streams /v1/completions the way vLLM's OpenAI routes do (SSE chunks with
token_ids, a usage chunk, [DONE]). No engine: the server makes up its tokens.

The regression this guards: the client stopped reading at [DONE], httpx then closed the
connection, and every request paid a new TCP connection in its TTFT."""

import asyncio
import json

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from benchmarks import serve_http as bench_http

app = FastAPI()
seen_ports: list[int] = []  # the client port names the TCP connection of each request


@app.post("/v1/completions")
async def completions(request: Request):
    body = await request.json()
    if body.get("model") != "m":
        return JSONResponse({"error": {"message": "no such model"}}, status_code=404)
    seen_ports.append(request.client.port)

    async def events():
        for i in range(body["max_tokens"]):
            chunk = f"data: {json.dumps({'choices': [{'text': 'x', 'token_ids': [i]}]})}\n\n"
            yield chunk[:7]  # one event over two writes: lines must be joined across reads
            yield chunk[7:]
        usage = {"prompt_tokens": 3, "completion_tokens": body["max_tokens"]}
        yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def measure(model: str, levels: list[int], requests_per_level: int):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        return await bench_http._measure_http(f"http://127.0.0.1:{port}", model, 5, levels, requests_per_level,
                                         startup_s=2)
    finally:
        server.should_exit = True
        await task


def test_every_client_keeps_one_connection_and_every_token_is_counted():
    seen_ports.clear()
    figures, warm = asyncio.run(asyncio.wait_for(measure("m", [1, 4], 8), 60))
    assert warm == [0, 1, 2, 3, 4]
    for c in ("1", "4"):
        assert figures[c]["requests"] == 8
        assert figures[c]["output_tokens"] == 8 * 5
        assert figures[c]["ttft_p50_ms"] > 0
    assert len(seen_ports) == 1 + 8 + 8
    # The warm-up's connection serves c=1, and c=4 adds three: never one per request.
    assert len(set(seen_ports)) <= 4


def test_an_error_status_fails_the_way_with_the_body():
    try:
        asyncio.run(asyncio.wait_for(measure("other", [1], 1), 60))
    except RuntimeError as e:
        assert "HTTP 404" in str(e) and "no such model" in str(e)
    else:
        raise AssertionError("an HTTP error must fail the measurement")


def test_free_port_stays_out_of_the_ephemeral_range_and_skips_ports_in_use(monkeypatch):
    """The CI failure this guards: a port from the kernel's ephemeral range was taken by one of
    Ray's outgoing connections before HAProxy bound it ("Address already in use")."""
    import random
    import socket
    from pathlib import Path

    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [bench_http.free_port() for _ in range(50)]
    assert len(set(ports)) == 50  # never the same twice
    assert all(p in bench_http.PORT_RANGE and not low <= p <= high for p in ports)
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports[0]))
        held.listen()
        other = next(p for p in bench_http.PORT_RANGE if p not in ports)
        monkeypatch.setattr(random, "sample", lambda population, k: [ports[1], ports[0], other])
        bench_http._given.discard(ports[0])
        assert bench_http.free_port() == other  # ports[1]: given already; ports[0]: in use
