import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Tiny matmuls gain nothing from threads, and on a busy 2-core box OpenMP threads
    # contending with other processes make them 10-100x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
