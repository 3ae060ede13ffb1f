"""Run by test_quantize_serve.py in a subprocess (vLLM spawns its engine process, which needs a
__main__ guard): load an exported model in vLLM, print greedy continuations as JSON.
PLAYGROUND_VLLM_DTYPE picks the engine dtype (default float32)."""

import json
import os
import sys

if __name__ == "__main__":
    from vllm import LLM, SamplingParams

    path, prompts = sys.argv[1], sys.argv[2:]
    llm = LLM(model=path, dtype=os.environ.get("PLAYGROUND_VLLM_DTYPE", "float32"), enforce_eager=True, max_model_len=64, gpu_memory_utilization=0.3)
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=12))
    print("RESULT " + json.dumps({"texts": [o.outputs[0].text for o in outs],
                                  "ids": [list(o.outputs[0].token_ids) for o in outs]}))
