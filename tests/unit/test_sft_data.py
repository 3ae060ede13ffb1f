"""SFT instruction data goes through versioned snapshots (training/posttrain/sft_data.py)."""

import json

import pytest

from training.data import snapshot
from training.errors import UserError
from training.posttrain import instructions, sft_data
from training.posttrain.config import SFTDataConfig
from training.workspace import Workspace

SMALL = dict(n_train=120, n_val=10, n_test=15, seed=3)


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


def _cfg(sources, **kw):
    return SFTDataConfig(sources=[str(s) for s in sources], **{**SMALL, **kw})


def _alpaca(n):
    return [{"instruction": f"What is {i} plus 1?", "input": "" if i % 3 else f"n={i}", "output": f"{i + 1}."}
            for i in range(n)]


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _leftovers(ws):
    return sorted(p.name for p in ws.datasets.iterdir()) if ws.datasets.exists() else []


def test_generated_snapshot(ws):
    sid = sft_data.prepare(_cfg(["instructions"]), ws)
    assert sid.startswith("instructions-") and len(sid) == len("instructions-") + 8
    splits = sft_data.load(ws, sid)
    assert {s: len(v) for s, v in splits.items()} == {"train": 120, "val": 10, "heldout_template": 15,
                                                      "heldout_entity": 15}
    assert splits == {s: [sft_data._example(e, None) for e in v]
                      for s, v in instructions.build(3, 120, 10, 15).items()}
    train_templates = {(e["task"], e["template"]) for e in splits["train"]}
    train_entities = {(e["task"], e["entity"]) for e in splits["train"]}
    assert not {(e["task"], e["template"]) for e in splits["heldout_template"]} & train_templates
    assert not {(e["task"], e["entity"]) for e in splits["heldout_entity"]} & train_entities

    m = sft_data.manifest(ws, sid)
    assert m["kind"] == "instructions" and m["id"] == sid and sid.endswith(m["fingerprint"][:8])
    assert m["counts"] == {"train": 120, "val": 10, "heldout_template": 15, "heldout_entity": 15}
    assert m["config"] == {"sources": ["instructions"], "n_train": 120, "n_val": 10, "n_test": 15, "seed": 3,
                           "val_fraction": 0.05, "system": None}
    assert [(i["source"], i["rows"]) for i in m["inputs"]] == [("instructions", 160)]
    folder = ws.dataset(sid)
    assert sorted(m["outputs"]) == sorted(f"{s}.jsonl" for s in sft_data.SPLITS)
    for name, out in m["outputs"].items():
        assert out["sha256"] == snapshot.sha256_file(folder / name)
        assert out["rows"] == len((folder / name).read_text().splitlines())
    assert set(m["code"]) >= {"git", "playground"} and m["created"]
    assert snapshot.list_snapshots(ws) == []  # `playground data list` shows text snapshots only, without error


def test_same_config_is_a_no_op_and_seed_changes_the_id(ws):
    sid = sft_data.prepare(_cfg(["instructions"]), ws)
    folder = ws.dataset(sid)
    before = {p.name: p.stat().st_mtime_ns for p in [folder, *folder.iterdir()]}
    assert sft_data.prepare(_cfg(["instructions"]), ws) == sid
    assert {p.name: p.stat().st_mtime_ns for p in [folder, *folder.iterdir()]} == before
    assert _leftovers(ws) == [sid]
    assert sft_data.prepare(_cfg(["instructions"], shape="alpaca"), ws) == sid  # shape is not content

    other = sft_data.prepare(_cfg(["instructions"], seed=4), ws)
    assert other != sid and other.startswith("instructions-")
    assert sft_data.prepare(_cfg(["instructions"], system="Be brief."), ws) not in (sid, other)

    (folder / "train.jsonl").write_text("{}\n")  # tampered outputs are rebuilt
    assert sft_data.prepare(_cfg(["instructions"]), ws) == sid
    assert len(sft_data.load(ws, sid)["train"]) == 120


def test_local_alpaca_file_splits_by_content_hash(ws, tmp_path):
    src = _write(tmp_path / "my data.jsonl", _alpaca(400))
    sid = sft_data.prepare(_cfg([src], val_fraction=0.2), ws)
    assert sid.startswith("my-data-")
    splits = sft_data.load(ws, sid)
    assert set(splits) == {"train", "val"}
    train, val = splits["train"], splits["val"]
    assert 50 <= len(val) <= 110 and len(train) + len(val) == 400
    assert sorted(train + val, key=lambda e: e["instruction"]) == sorted(_alpaca(400), key=lambda e: e["instruction"])

    # Deterministic: another workspace, the same split; rows move with their content, not their position.
    ws2 = Workspace(tmp_path / "ws2")
    _write(src, list(reversed(_alpaca(400))))
    sid2 = sft_data.prepare(_cfg([src], val_fraction=0.2), ws2)
    assert sid2 != sid  # the file changed
    again = sft_data.load(ws2, sid2)
    assert sorted(e["instruction"] for e in again["val"]) == sorted(e["instruction"] for e in val)

    m = sft_data.manifest(ws, sid)
    assert m["counts"] == {"train": len(train), "val": len(val), "heldout_template": 0, "heldout_entity": 0}
    assert sorted(m["outputs"]) == ["train.jsonl", "val.jsonl"]
    assert m["inputs"][0]["rows"] == 400 and len(m["inputs"][0]["sha256"]) == 64


def test_messages_and_sharegpt_files(ws, tmp_path):
    msgs = _write(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": f"Hi {i}\n\nctx"},
                      {"role": "assistant", "content": f"Hello {i}."}]} for i in range(50)])
    share = _write(tmp_path / "share.jsonl", [
        {"conversations": [{"from": "human", "value": f"Q{i}"}, {"from": "gpt", "value": f"A{i}"}]}
        for i in range(50)])
    sid = sft_data.prepare(_cfg([msgs, share], val_fraction=0.1), ws)
    assert sid.startswith("chat-")
    splits = sft_data.load(ws, sid)
    rows = splits["train"] + splits["val"]
    assert len(rows) == 100 and 1 <= len(splits["val"]) <= 25
    assert {"instruction": "Hi 7", "input": "ctx", "output": "Hello 7.", "system": "Be kind."} in rows
    assert {"instruction": "Q7", "input": "", "output": "A7"} in rows
    assert [i["rows"] for i in sft_data.manifest(ws, sid)["inputs"]] == [50, 50]


def test_bad_row_names_file_line_field_and_writes_nothing(ws, tmp_path):
    rows = _alpaca(5)
    del rows[2]["output"]
    bad = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError, match=r"^\S*bad\.jsonl:3: missing field 'output'$"):
        sft_data.prepare(_cfg(["instructions", bad]), ws)
    assert _leftovers(ws) == []
    with pytest.raises(UserError, match=r"^data\.sources\[0\]: not found: .*nope\.jsonl$"):
        sft_data.prepare(_cfg([tmp_path / "nope.jsonl"]), ws)


def test_unknown_source(ws, tmp_path):
    with pytest.raises(UserError, match=r"^data\.sources\[1\]: unknown source 'notes\.txt'; use 'instructions', "):
        sft_data.prepare(_cfg(["instructions", "notes.txt"]), ws)
    with pytest.raises(UserError, match=r"data\.sources\[0\]: bad source spec 'hf:'"):
        sft_data.prepare(_cfg(["hf:"]), ws)
    assert _leftovers(ws) == []


def test_hf_local_folder_offline(ws, tmp_path, monkeypatch):
    """hf:NAME with NAME a local folder of .jsonl files goes through `datasets` with no network."""
    import datasets.config

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read once, when `datasets` is imported
    folder = tmp_path / "alpaca_ds"
    _write(folder / "data.jsonl", _alpaca(60))
    sid = sft_data.prepare(_cfg([f"hf:{folder}"], val_fraction=0.2), ws)
    assert sid.startswith("alpaca_ds-")
    splits = sft_data.load(ws, sid)
    got = sorted(splits["train"] + splits["val"], key=lambda e: e["instruction"])
    assert got == sorted(_alpaca(60), key=lambda e: e["instruction"])
    inp = sft_data.manifest(ws, sid)["inputs"][0]
    assert inp["rows"] == 60 and [f["path"] for f in inp["files"]] == [str(folder / "data.jsonl")]
    assert sft_data.prepare(_cfg([f"hf:{folder}"], val_fraction=0.2), ws) == sid
    _write(folder / "data.jsonl", _alpaca(61))  # the local files are fingerprinted
    assert sft_data.prepare(_cfg([f"hf:{folder}"], val_fraction=0.2), ws) != sid

    bad = tmp_path / "bad_ds"
    rows = _alpaca(4)
    rows[1]["output"] = " "
    _write(bad / "data.jsonl", rows)
    with pytest.raises(UserError, match=rf"^hf:{bad} row 2: field 'output' is empty$"):
        sft_data.prepare(_cfg([f"hf:{bad}"]), ws)
    with pytest.raises(UserError, match="cannot load hf:"):
        sft_data.prepare(_cfg([f"hf:{folder}@nosuchsplit"]), ws)


def test_snapshot_source_and_load_errors(ws, tmp_path):
    base = sft_data.prepare(_cfg(["instructions"]), ws)
    assert sft_data.prepare(_cfg([f"snapshot:{base}"]), ws) == base
    extra = _write(tmp_path / "extra.jsonl", _alpaca(30))
    both = sft_data.prepare(_cfg([f"snapshot:{base}", extra], val_fraction=0.1), ws)
    assert both.startswith(f"{base}-") and both != base
    a, b = sft_data.load(ws, base), sft_data.load(ws, both)
    assert len(b["train"]) + len(b["val"]) == 120 + 10 + 30
    assert b["train"][:120] == a["train"] and b["heldout_entity"] == a["heldout_entity"]

    with pytest.raises(UserError, match=r"^data\.snapshot: no snapshot 'nope'"):
        sft_data.load(ws, "nope")
    with pytest.raises(UserError, match=r"^data\.snapshot: not a snapshot id: '\.\./x'"):
        sft_data.load(ws, "../x")
    text = ws.dataset("text-ds")
    text.mkdir(parents=True)
    (text / "manifest.json").write_text(json.dumps({"kind": "snapshot", "id": "text-ds"}))
    with pytest.raises(UserError, match=r"^data\.snapshot: 'text-ds' is not instruction data \(kind 'snapshot'\)"):
        sft_data.manifest(ws, "text-ds")
    with pytest.raises(UserError, match=r"^data\.sources\[0\]: 'text-ds' is not instruction data"):
        sft_data.prepare(_cfg(["snapshot:text-ds"]), ws)


def test_to_rows():
    exs = [{"instruction": "Add.", "input": "2 and 3", "output": "5.", "task": "arithmetic"},
           {"instruction": "Hi?", "input": "", "output": "Hello.", "system": "Be kind."}]
    assert sft_data.to_rows(exs, "messages") == [
        {"messages": [{"role": "user", "content": "Add.\n\n2 and 3"}, {"role": "assistant", "content": "5."}]},
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi?"},
                      {"role": "assistant", "content": "Hello."}]}]
    assert sft_data.to_rows(exs, "alpaca", system="Short.") == [
        {"prompt": [{"role": "system", "content": "Short."}, {"role": "user", "content": "Add.\n\n2 and 3"}],
         "completion": [{"role": "assistant", "content": "5."}]},
        {"prompt": [{"role": "system", "content": "Short."}, {"role": "user", "content": "Hi?"}],
         "completion": [{"role": "assistant", "content": "Hello."}]}]
    assert sft_data.to_rows(exs[:1], "alpaca") == [
        {"prompt": [{"role": "user", "content": "Add.\n\n2 and 3"}],
         "completion": [{"role": "assistant", "content": "5."}]}]
    with pytest.raises(UserError, match=r"^data\.shape: use one of alpaca, messages, got 'text'$"):
        sft_data.to_rows(exs, "text")


def test_text_stages_name_instruction_data_for_what_it_is(tmp_path):
    import json as _json

    from training.data.snapshot import manifest_at

    folder = tmp_path / "datasets" / "instructions-1"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(_json.dumps({"kind": "instructions"}))
    with pytest.raises(UserError, match="is instruction data"):
        manifest_at(folder, "data.snapshot")
