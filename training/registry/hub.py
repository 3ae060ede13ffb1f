"""Bring models in from outside, and send them out: the Hugging Face Hub and local folders.

A Hugging Face model is a folder: `config.json` (the architecture: `model_type` picks the class),
weights (`*.safetensors`, maybe split into shards listed by `model.safetensors.index.json`; older
ones `pytorch_model.bin`), and the tokenizer's files. That is all a workspace model is too, so
importing is a check and a copy:

    import_folder(ws, Path("~/Downloads/SmolLM2-135M"))   a local folder -> workspace/models/<id>
    import_hub(ws, "HuggingFaceTB/SmolLM2-135M")          the Hub -> a temp folder -> import_folder
    publish(ws, "demo-sft", "me/demo-sft")                the card, then the folder -> the Hub

The check comes first and says in one line what is missing (no config.json, a `model_type`
transformers does not know, not a causal language model, no weights, a missing shard, no tokenizer
that loads), because a half-usable model found later, when vLLM refuses it, is much harder to
understand. The copy is atomic (training/atomic.py): after a failure there is no half a model.

The network is the other thing that goes wrong. Offline, huggingface_hub retries and waits for
timeouts; here an offline machine (`HF_HUB_OFFLINE=1`, or the Hub not answering within a few
seconds) is a one-line error at once. A token is a password: it is passed to huggingface_hub and
never written into a message, a log line or a return value (`_redact`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

from training.atomic import atomic_dir
from training.errors import UserError
from training.registry.card import UPSTREAM_README
from training.registry.registry import check_id, read_info, require
from training.workspace import Workspace

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")
# What a causal LM needs from a Hub repo; the rest (other formats' weights, images, ONNX...) stays there.
ALLOW = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
         "pytorch_model*.bin", "pytorch_model.bin.index.json", "tokenizer*", "vocab.*", "merges.txt",
         "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "*.tiktoken", "*.model",
         "README.md", "LICENSE*"]
CHECK_TIMEOUT_S = 4.0


# --------------------------------------------------------------------------- names and the network


def check_name(name: str, field: str = "hub") -> str:
    """A Hub repo id, `owner/name`; refused before any network use."""
    if not isinstance(name, str) or not _HUB_NAME.fullmatch(name) or ".." in name or "--" in name:
        raise UserError(f"{field}: {name!r} is not a Hugging Face Hub name (owner/name, e.g. "
                        "HuggingFaceTB/SmolLM2-135M)")
    return name


def _offline_flag() -> str | None:
    from huggingface_hub import constants

    # The constant is read once, when huggingface_hub is imported; the variable may be set since.
    set_now = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return "HF_HUB_OFFLINE is set" if set_now or constants.HF_HUB_OFFLINE else None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def _unreachable(reason: str) -> UserError:
    return UserError(f"cannot reach the Hugging Face Hub (offline?): {reason}")


def check_online(timeout: float = CHECK_TIMEOUT_S) -> None:
    """Refuse at once when offline: the offline flag, or the Hub's endpoint not answering in `timeout` s.

    The request runs in a daemon thread that is waited for `timeout` seconds at most, because a
    stalled DNS lookup is not covered by the HTTP timeout."""
    flag = _offline_flag()
    if flag:
        raise _unreachable(flag)
    import httpx
    from huggingface_hub import constants

    outcome: list[str | None] = []

    def probe() -> None:
        try:
            status = httpx.head(constants.ENDPOINT, timeout=timeout, follow_redirects=True).status_code
            outcome.append(None if status < 500 else f"{constants.ENDPOINT} answered HTTP {status}")
        except Exception as e:  # noqa: BLE001 - any failure to connect means "not reachable"
            outcome.append(_short(e))

    thread = threading.Thread(target=probe, daemon=True, name="hub-check")
    thread.start()
    thread.join(timeout + 1.0)
    if not outcome:
        raise _unreachable(f"no answer from {constants.ENDPOINT} in {timeout:g} s")
    if outcome[0]:
        raise _unreachable(outcome[0])


def _redact(text: str, token: str | None) -> str:
    """`text` without the token (nor anything shaped like a Hub token)."""
    if token:
        text = text.replace(token, "***")
    return _TOKEN.sub("hf_***", text)


def _hub_error(e: BaseException, what: str, token: str | None = None) -> UserError:
    """One line for an exception from huggingface_hub, the token removed."""
    import httpx
    from huggingface_hub import errors

    if isinstance(e, (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError, httpx.TransportError,
                      ConnectionError, TimeoutError)):
        return _unreachable(_redact(_short(e), token))
    if isinstance(e, (errors.RepositoryNotFoundError, errors.GatedRepoError, errors.RevisionNotFoundError)):
        return UserError(_redact(f"{what}: not found, private or gated on the Hub ({_short(e)}); for a private "
                                 "or gated one, log in with `hf auth login` or set HF_TOKEN", token))
    return UserError(_redact(f"{what}: the Hub refused: {_short(e)}", token))


# --------------------------------------------------------------------------- checking a folder


def _not_a_model(src: Path, why: str) -> UserError:
    return UserError(f"not a model folder: {src} {why}")


def validate(src: Path) -> dict:
    """Check that `src` is a Hugging Face causal LM folder; returns `{"model_type", "architecture"}`.

    Raises:
        UserError: "not a model folder: <path> has no config.json" (or what else is missing).
    """
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not src.is_dir():
        raise _not_a_model(src, "is not a folder" if src.exists() else "does not exist")
    if not (src / "config.json").is_file():
        raise _not_a_model(src, "has no config.json")
    try:
        model_type = json.loads((src / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as e:
        raise _not_a_model(src, f"has an unreadable config.json ({_short(e)})") from None
    if not model_type:
        raise _not_a_model(src, "has a config.json without a model_type")
    try:
        config = AutoConfig.from_pretrained(str(src))
    except (ValueError, KeyError, OSError) as e:
        raise _not_a_model(src, f"has model_type {model_type!r}, which transformers does not know "
                                f"({_short(e)[:120]})") from None
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise _not_a_model(src, f"holds a {model_type!r} model, which is not a causal language model")
    _check_weights(src)
    try:
        AutoTokenizer.from_pretrained(str(src))
    except Exception as e:  # noqa: BLE001 - missing files, a broken tokenizer.json: all "no tokenizer"
        raise _not_a_model(src, f"has no tokenizer that loads with AutoTokenizer ({_short(e)[:120]})") from None
    return {"model_type": model_type, "architecture": (getattr(config, "architectures", None) or [None])[0]}


def _check_weights(src: Path) -> None:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (src / index).is_file():
            try:
                shards = set(json.loads((src / index).read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError) as e:
                raise _not_a_model(src, f"has an unreadable {index} ({_short(e)})") from None
            missing = sorted(s for s in shards if not (src / s).is_file())
            if missing:
                raise _not_a_model(src, f"lacks {missing[0]}, a weight shard {index} lists")
            return
    if not any(src.glob("*.safetensors")) and not (src / "pytorch_model.bin").is_file():
        raise _not_a_model(src, "has no weights (*.safetensors or pytorch_model.bin)")


# --------------------------------------------------------------------------- import


def _new_id(ws: Workspace, model_id: str) -> Path:
    target = ws.model(check_id(model_id, "id"))
    if target.exists():
        raise UserError(f"id: {model_id!r} already exists (choose another id, or delete it first)")
    return target


def _copy(src: Path, dest: Path) -> None:
    for item in sorted(src.iterdir()):
        if item.name.startswith(".") or item.name == "playground.json":  # .cache/ of a Hub download
            continue
        target = dest / (UPSTREAM_README if item.name == "README.md" else item.name)
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    for path in dest.rglob("*"):  # readable by a serving process that runs as another user
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _import(ws: Workspace, src: Path, model_id: str | None, source: str, revision: str | None = None) -> Path:
    if not src.is_dir():
        raise _not_a_model(src, "is not a folder" if src.exists() else "does not exist")
    target = _new_id(ws, model_id or src.resolve().name)
    facts = validate(src)
    upstream = read_info(src)  # an export of another playground: keep its lab config (export.load_export reads it)
    info = {"kind": "imported", "source": source, "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "lineage": {"imported_from": source, "revision": revision, **facts}}
    if isinstance(upstream.get("config"), dict):
        info["config"] = upstream["config"]
    with atomic_dir(target) as tmp:
        _copy(src, tmp)
        (tmp / "playground.json").write_text(json.dumps(info, indent=2))
        os.chmod(tmp / "playground.json", 0o644)
    return target


def import_folder(ws: Workspace, src: Path, model_id: str | None = None) -> Path:
    """Copy the Hugging Face model folder `src` into `workspace/models/<model_id>` (default: its name).

    Returns the new folder. Raises UserError (nothing written) when `src` is not a causal LM folder,
    or the id is taken or not a safe folder name."""
    src = Path(src).expanduser()
    return _import(ws, src, model_id, str(src.resolve()) if src.exists() else str(src))


def _progress_bar(callback: Callable[[int, int], None], total: int | None = None):
    """A tqdm class for `snapshot_download(tqdm_class=...)` that draws nothing and calls
    `callback(done_bytes, total_bytes)` as the file bytes arrive.

    snapshot_download makes three bars from it: a count of files, "Downloading bytes" (network
    transfer) and one that counts the bytes written; the last is the progress a user wants. Its
    own total grows as each file starts, so the total known beforehand (`total`) is preferred."""
    from tqdm.auto import tqdm

    lock = threading.Lock()

    class Progress(tqdm):
        def __init__(self, *args, **kwargs):
            self._report = kwargs.get("unit") == "B" and not str(kwargs.get("desc", "")).startswith("Downloading")
            self._done = 0
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if self._report and n:
                with lock:
                    self._done += int(n)
                    callback(self._done, max(int(total or 0), int(self.total or 0)))

    return Progress


def import_hub(ws: Workspace, name: str, model_id: str | None = None,
               progress: Callable[[int, int], None] | None = None, revision: str | None = None) -> Path:
    """Download Hub model `name` (owner/name) and import it as `workspace/models/<model_id>`
    (default: the part after the slash). `progress(done_bytes, total_bytes)` is called as it downloads.

    Raises:
        UserError: a bad name or id (before any network use), offline, not found, not a causal LM.
    """
    from huggingface_hub import snapshot_download

    check_name(name)
    target = _new_id(ws, model_id or name.split("/")[-1])
    check_online()
    staging = target.with_name(f".{target.name}.download-{uuid.uuid4().hex[:8]}")
    try:
        try:
            files = snapshot_download(name, revision=revision, allow_patterns=ALLOW, dry_run=True, etag_timeout=5)
            allow = [p for p in ALLOW if not p.startswith("pytorch_model")] \
                if any(f.filename.endswith(".safetensors") for f in files) else ALLOW  # never both formats
            total = sum(f.file_size or 0 for f in files if any(fnmatch(f.filename, p) for p in allow))
            snapshot_download(name, revision=revision, local_dir=staging, allow_patterns=allow, etag_timeout=5,
                              tqdm_class=_progress_bar(progress, total) if progress else None)
        except Exception as e:  # noqa: BLE001 - every Hub failure becomes one line
            raise _hub_error(e, f"hub: {name}") from None
        return _import(ws, staging, target.name, name, revision)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- publish


def _token(token: str | None) -> str:
    from huggingface_hub import get_token

    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise UserError("publish needs a Hugging Face token with write access: set HF_TOKEN or run `hf auth login`")
    return token


def publish(ws: Workspace, model_id: str, repo_id: str, private: bool = True, token: str | None = None) -> str:
    """Write the model's card, then upload `workspace/models/<model_id>` to the Hub repo `repo_id`
    (created, private by default, if it does not exist). Returns the repo's URL.

    The token comes from `token`, else HF_TOKEN, else huggingface_hub's stored login; it never
    appears in a message or the return value."""
    from huggingface_hub import HfApi

    from training.registry import card

    folder = require(ws, model_id)
    check_name(repo_id, "repo_id")
    flag = _offline_flag()
    if flag:
        raise _unreachable(flag)
    secret = _token(token)
    check_online()
    card.write_card(ws, folder)
    try:
        api = HfApi(token=secret)
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          commit_message=f"Upload {model_id} from the LLM Playground",
                          ignore_patterns=[".*", "**/.*"])
    except Exception as e:  # noqa: BLE001 - auth, network, quota: one line, token removed
        raise _hub_error(e, f"publish {repo_id}", secret) from None
    return _redact(str(url), secret)
