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


@pytest.fixture(autouse=True)
def _plain_main_module(monkeypatch):
    # Streamlit's AppTest leaves a UI page as sys.modules["__main__"], and spawned processes
    # (torch.multiprocessing, spawn pools) re-import the parent's __main__: give every test a
    # plain one, so a page never runs inside a child process.
    import sys
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A 44-token word-level tokenizer folder (w0 ... w39 and four specials), for tiny exports."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>"])}
    vocab.update({f"w{i}": i + 4 for i in range(40)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    path = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(path)
    return path
