"""The pure parts of `playground bench serve` (benchmarks/serve_stats.py): percentiles, SSE parsing,
the load loop and the figures. No engine, no Ray: the benchmark itself is run by hand."""

import asyncio
import json
import os

import pytest

from benchmarks import serve as bench
from benchmarks import serve_http as bench_http
from benchmarks import serve_stats as bench_stats
from cluster.cli import build_parser
from training.errors import UserError


@pytest.mark.parametrize("values, q, expected", [
    ([5.0], 50, 5.0),
    ([1, 2, 3, 4], 50, 2.5),
    ([4, 1, 3, 2], 0, 1),
    ([4, 1, 3, 2], 100, 4),
    (list(range(1, 21)), 95, 19.05),  # numpy.percentile(range(1, 21), 95)
    ([], 50, None),
])
def test_percentile_matches_numpy_linear(values, q, expected):
    got = bench_stats.percentile(values, q)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_parse_levels():
    assert bench_stats.parse_levels("16, 1,4,4") == [1, 4, 16]
    for bad in ("", "0,4", "one", "1;4"):
        with pytest.raises(UserError, match="--levels"):
            bench_stats.parse_levels(bad)


def test_requests_for_defaults_and_floor():
    assert [bench_stats.requests_for(c) for c in (1, 4, 16, 32)] == [32, 32, 64, 128]
    assert bench_stats.requests_for(4, 10) == 10
    assert bench_stats.requests_for(16, 4) == 16  # never fewer requests than clients


def test_prompts_are_the_same_list_for_every_way():
    assert bench_stats.prompt_list(3) == list(bench_stats.PROMPTS[:3])
    assert bench_stats.prompt_list(len(bench_stats.PROMPTS) + 1)[-1] == bench_stats.PROMPTS[0]


def test_parse_sse_line():
    chunk = {"choices": [{"index": 0, "text": " the", "token_ids": [17]}]}
    assert bench_stats.parse_sse_line(f"data: {json.dumps(chunk)}") == chunk
    assert bench_stats.parse_sse_line("data:[DONE]") is bench_stats.DONE
    assert bench_stats.parse_sse_line("data: [DONE]\r\n") is bench_stats.DONE
    for other in ("", "   ", ": keep-alive", "event: message", "data:"):
        assert bench_stats.parse_sse_line(other) is None
    with pytest.raises(json.JSONDecodeError):
        bench_stats.parse_sse_line("data: {not json")


def test_chunk_tokens():
    assert bench_stats.chunk_tokens({"choices": [{"text": "ab", "token_ids": [1, 2]}]}) == (2, True)
    # A token whose bytes do not yet make a character: no text, still the first token.
    assert bench_stats.chunk_tokens({"choices": [{"text": "", "token_ids": [9]}]}) == (1, True)
    assert bench_stats.chunk_tokens({"choices": [{"text": "x"}]}) == (0, True)  # server without token_ids
    assert bench_stats.chunk_tokens({"choices": [], "usage": {"completion_tokens": 16}}) == (0, False)
    with pytest.raises(RuntimeError, match="context length"):
        bench_stats.chunk_tokens({"error": {"message": "over the context length", "code": 400}})


def test_level_figures():
    level = bench_stats.Level(2, [bench_stats.Sample(0.010, 16), bench_stats.Sample(0.030, 16)], wall_s=0.5)
    f = bench_stats.level_figures(level)
    assert f == {"concurrency": 2, "requests": 2, "output_tokens": 32, "wall_s": 0.5,
                 "ttft_p50_ms": 20.0, "ttft_p95_ms": 29.0, "output_tokens_per_s": 64.0}


def _lv(ttft_ms, tps):
    return {"ttft_p50_ms": ttft_ms, "ttft_p95_ms": ttft_ms, "output_tokens_per_s": tps, "requests": 4}


def test_assemble_figures_ratios():
    ways = {"hf": {"seq": _lv(10.0, 100.0)},
            "engine": {"1": _lv(20.0, 150.0), "16": _lv(80.0, 900.0)},
            "vllm_http": {"1": _lv(22.0, 130.0)},
            "serve": {"1": _lv(25.0, 120.0), "16": _lv(90.0, 600.0)}}
    f = bench_stats.assemble_figures(ways, model="m", max_tokens=64, levels=[1, 16], host="h", extra={"x": 1})
    assert f["ttft_ratio_vllm_http_vs_engine"] == 1.1 and f["ttft_ratio_serve_vs_vllm_http"] == 1.136
    assert f["bench"] == "serve" and f["max_tokens"] == 64 and f["ways"] is ways and f["x"] == 1
    assert f["ttft_ratio_serve_vs_engine"] == 1.25
    assert f["throughput_ratio_serve_vs_hf_c16"] == 6.0
    assert f["throughput_ratio_serve_vs_hf"] == {"1": 1.2, "16": 6.0}
    assert f["throughput_ratio_serve_vs_engine"] == {"1": 0.8, "16": 0.667}
    assert list(f)[-1] == "host"
    json.dumps(f)  # all JSON


def test_assemble_figures_without_the_goal_levels():
    ways = {"hf": {"seq": _lv(10.0, 100.0)}, "engine": {"4": _lv(20.0, 300.0)}, "serve": {"4": _lv(30.0, 0.0)}}
    f = bench_stats.assemble_figures(ways, model="m", max_tokens=16, levels=[4], host="h")
    assert f["ttft_ratio_serve_vs_engine"] is None
    assert f["throughput_ratio_serve_vs_hf_c16"] is None
    assert f["throughput_ratio_serve_vs_hf"] == {"4": 0.0}
    assert bench_stats.ratio(1.0, 0.0) is None and bench_stats.ratio(None, 2.0) is None


def test_print_table_states_the_goals(capsys):
    ways = {"hf": {"seq": _lv(10.0, 100.0)}, "engine": {"1": _lv(20.0, 150.0)}, "serve": {"1": _lv(25.0, 120.0)}}
    bench_stats.print_table(bench_stats.assemble_figures(ways, model="m", max_tokens=8, levels=[1], host="h"))
    out = capsys.readouterr().out
    assert "goal <= 1.3: meets the goal" in out and "goal >= 5: not measured" in out


def test_run_level_is_closed_loop_with_c_clients():
    in_flight, peak = 0, 0

    async def send(prompt):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return bench_stats.Sample(0.001, len(prompt))

    prompts = bench_stats.prompt_list(10)
    level = asyncio.run(bench_stats.run_level(send, prompts, 4))
    assert peak == 4 and level.concurrency == 4
    assert [s.tokens for s in level.samples] == [len(p) for p in prompts]
    assert 0.02 < level.wall_s < 1.0  # 3 rounds of 10 ms, not 10


def test_completion_body_asks_for_exact_greedy_streams():
    body = bench_http.completion_body("bench-micro", "Hi", 64)
    assert body["temperature"] == 0 and body["max_tokens"] == 64 and body["stream"] is True
    assert body["ignore_eos"] is True and body["return_token_ids"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_common_prefix():
    assert bench.common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert bench.common_prefix([1, 2], [1, 2, 3]) == 2
    assert bench.common_prefix([], [1]) == 0


def test_resolve_model_unknown_id_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--model nope"):
        bench.resolve_model(bench.Workspace.resolve(tmp_path), "nope")


def test_serve_engine_args_come_from_the_local_serve_config():
    engine = bench.serve_engine_args()
    assert engine["dtype"] == "float32" and engine["enforce_eager"] is True
    assert engine["gpu_memory_utilization"] == 0.3 and engine["kv_cache_gib"] == 1


def test_cli_bench_serve_options():
    args = build_parser().parse_args(["bench", "serve"])
    assert (args.model, args.max_tokens, args.levels, args.requests_per_level, args.rounds) == \
        (None, 64, "1,4,16", None, 1)
    args = build_parser().parse_args(["bench", "serve", "--model", "m", "--max-tokens", "16", "--levels", "1,4",
                                      "--requests-per-level", "6", "--rounds", "3"])
    assert (args.model, args.max_tokens, args.levels, args.requests_per_level, args.rounds) == ("m", 16, "1,4", 6, 3)


def test_bad_levels_fail_before_anything_heavy(tmp_path):
    with pytest.raises(UserError, match="--levels"):
        bench.bench_serve(levels="0", workspace=bench.Workspace.resolve(tmp_path))
    with pytest.raises(UserError, match="--max-tokens"):
        bench.bench_serve(max_tokens=0, workspace=bench.Workspace.resolve(tmp_path))
    with pytest.raises(UserError, match="--rounds"):
        bench.bench_serve(rounds=0, workspace=bench.Workspace.resolve(tmp_path))


def test_rounds_fold_into_medians_and_the_ratios_come_from_them():
    def ways(serve_ttft, engine_ttft, serve_tps, hf_tps):
        def lv(c, ttft, tps):
            return {"concurrency": c, "requests": 32, "output_tokens": 2048, "wall_s": 1.0,
                    "ttft_p50_ms": ttft, "ttft_p95_ms": None, "output_tokens_per_s": tps}

        return {"hf": {"seq": lv("sequential", 9.0, hf_tps)},
                "engine": {"1": lv(1, engine_ttft, 200.0), "16": lv(16, 40.0, 1800.0)},
                "serve": {"1": lv(1, serve_ttft, 150.0), "16": lv(16, 90.0, serve_tps)}}

    rounds = [ways(30.0, 10.0, 1000.0, 200.0), ways(14.0, 10.0, 1400.0, 250.0), ways(15.0, 9.0, 1300.0, 140.0)]
    folded = bench_stats.median_ways(rounds)
    assert folded["serve"]["1"]["ttft_p50_ms"] == 15.0 and folded["engine"]["1"]["ttft_p50_ms"] == 10.0
    assert folded["serve"]["16"]["output_tokens_per_s"] == 1300.0 and folded["hf"]["seq"]["output_tokens_per_s"] == 200.0
    assert folded["serve"]["1"]["ttft_p95_ms"] is None  # not measured stays not measured
    assert folded["serve"]["1"]["requests"] == 32  # counts are not medians
    f = bench_stats.assemble_figures(folded, model="m", max_tokens=64, levels=[1, 16], host="h")
    assert f["ttft_ratio_serve_vs_engine"] == 1.5 and f["throughput_ratio_serve_vs_hf_c16"] == 6.5


def test_measure_engine_gives_back_the_environment_vllm_edited(monkeypatch):
    # The engine itself is replaced here (a unit test builds no vLLM engine); what is
    # checked is that (d) and (a) do not inherit what vLLM wrote into os.environ.
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setenv("PLAYGROUND_TEST_KEPT", "1")

    async def fake_engine(path, engine, max_tokens, levels, requests_per_level, procs):
        os.environ["LD_PRELOAD"] = "/some/libgomp.so.1"
        del os.environ["PLAYGROUND_TEST_KEPT"]
        assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"
        return {"1": {}}, [7]

    monkeypatch.setattr(bench, "_measure_engine", fake_engine)
    monkeypatch.setattr(bench, "reap_children", lambda procs: None)
    before = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    assert bench.measure_engine(None, {"kv_cache_gib": 1}, 4, [1], 1) == ({"1": {}}, [7])
    assert "LD_PRELOAD" not in os.environ
    assert os.environ["PLAYGROUND_TEST_KEPT"] == "1"
    assert os.environ.get("VLLM_CPU_KVCACHE_SPACE") == before
