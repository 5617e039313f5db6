"""Importing the papers' training checkpoints (torch.save with ``module.`` keys) and exporting ours."""

from __future__ import annotations

import argparse
import json
import sys

import pytest
import torch
from click.testing import CliRunner

from clipbench.checkpoints import export_checkpoint, import_checkpoint, read_foreign_state
from clipbench.cli_checkpoint import checkpoint_group
from clipbench.errors import ClipbenchError
from clipbench.models import (
    SIDECAR_FILE,
    WEIGHTS_FILE,
    create_model,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)

MICRO = "clipbench-micro-vit"
TINY_RN = "clipbench-tiny-rn"


@pytest.fixture(scope="module")
def micro():
    return create_model(MICRO, seed=5)


def paper_checkpoint(clip, path, **extra):
    """A checkpoint as CyCLIP / CleanCLIP save it: DDP keys, OpenAI metadata entries, optimizer state."""
    state = {"module." + k: v.clone() for k, v in clip.model.state_dict().items()}
    state["module.input_resolution"] = torch.tensor(16)
    state["module.context_length"] = torch.tensor(16)
    state["module.vocab_size"] = torch.tensor(49408)
    optimizer = {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.zeros(3)}},
                 "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.98), "weight_decay": 0.1, "params": [0]}]}
    torch.save({"epoch": 3, "name": "run", "state_dict": state, "optimizer": optimizer, **extra}, path)
    return path


def assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def invoke(args):
    """Run ``checkpoint_group`` in-process; ClipbenchError stays in ``result.exception``."""
    return CliRunner().invoke(checkpoint_group, [str(a) for a in args], catch_exceptions=True)


def assert_clipbench_error(result, *fragments):
    assert isinstance(result.exception, ClipbenchError), (result.exception, result.output)
    message = str(result.exception)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def run_main(args, monkeypatch, capsys):
    """Run the console entry point ``clipbench.cli.main`` with ``checkpoint`` registered."""
    from clipbench import cli as cli_module

    monkeypatch.setitem(cli_module.cli.commands, "checkpoint", checkpoint_group)
    monkeypatch.setattr(sys, "argv", ["clipbench", "checkpoint", *[str(a) for a in args]])
    code = 0
    try:
        cli_module.main()
    except SystemExit as done:
        code = done.code
    out, err = capsys.readouterr()
    return code, out, err


def test_import_round_trip_gives_identical_tensors(micro, tmp_path):
    src = paper_checkpoint(micro, tmp_path / "epoch_3.pt")
    out = tmp_path / "imported"
    result = invoke(["import", src, "--arch", MICRO, "--out", out, "--allow-pickle"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0]
    sidecar = json.loads((out / SIDECAR_FILE).read_text())
    assert lines[0].endswith(f"(sha256 {sidecar['sha256']})")
    assert sidecar["architecture"] == MICRO and sidecar["imported_from"] == str(src)
    assert sidecar["source_format"] == "torch-pickle" and sidecar["source_epoch"] == 3
    assert sidecar["source_sha256"] == file_sha256(src)
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS_FILE, SIDECAR_FILE])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder is left"
    assert_same_state(load_checkpoint(out).model.state_dict(), micro.model.state_dict())


def test_modified_resnet_imports_too(tmp_path):
    rn = create_model(TINY_RN, seed=2)
    src = paper_checkpoint(rn, tmp_path / "rn.pt")
    clip = import_checkpoint(src, TINY_RN, tmp_path / "rn", allow_pickle=True)
    assert clip.name == TINY_RN and len(clip.weights_sha256) == 64
    assert_same_state(load_checkpoint(tmp_path / "rn").model.state_dict(), rn.model.state_dict())


def test_read_foreign_state_unwraps_and_strips(micro, tmp_path):
    state = read_foreign_state(paper_checkpoint(micro, tmp_path / "c.pt"), allow_pickle=True)
    assert_same_state(state, micro.model.state_dict())
    bare = tmp_path / "bare.pt"  # a bare state dict, no wrapper and no module. prefix
    torch.save({**micro.model.state_dict(), "input_resolution": torch.tensor(16)}, bare)
    assert_same_state(read_foreign_state(bare, allow_pickle=True), micro.model.state_dict())
    nested = tmp_path / "nested.pt"
    torch.save({"model_state_dict": {"module." + k: v for k, v in micro.model.state_dict().items()}}, nested)
    assert_same_state(read_foreign_state(nested, allow_pickle=True), micro.model.state_dict())


def test_safetensors_source_needs_no_opt_in(micro, tmp_path):
    from safetensors.torch import save_file

    src = tmp_path / "weights.safetensors"
    save_file({"module." + k: v.contiguous() for k, v in micro.model.state_dict().items()}, str(src))
    result = invoke(["import", src, "--arch", MICRO, "--out", tmp_path / "out"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / SIDECAR_FILE).read_text())["source_format"] == "safetensors"


def test_pickle_is_refused_without_allow_pickle(micro, tmp_path, monkeypatch, capsys):
    src = paper_checkpoint(micro, tmp_path / "epoch_3.pt")
    out = tmp_path / "imported"
    result = invoke(["import", src, "--arch", MICRO, "--out", out])
    assert_clipbench_error(result, str(src), "is a pickle", "--allow-pickle")
    code, stdout, stderr = run_main(["import", src, "--arch", MICRO, "--out", out], monkeypatch, capsys)
    assert code == 2 and stdout == ""
    assert stderr.splitlines() == [f"clipbench: error: {result.exception}"]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_3.pt"]


def test_pickle_with_other_objects_is_refused_not_unpickled(micro, tmp_path):
    src = paper_checkpoint(micro, tmp_path / "args.pt", args=argparse.Namespace(lr=1e-5))
    with pytest.raises(ClipbenchError, match=r"holds objects other than tensors \(e.g. argparse.Namespace\)"):
        read_foreign_state(src, allow_pickle=True)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ClipbenchError, match="is not a readable torch checkpoint"):
        read_foreign_state(corrupt, allow_pickle=True)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"not safetensors")
    with pytest.raises(ClipbenchError, match="is not a valid safetensors file"):
        read_foreign_state(fake)
    no_tensors = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "name": "run"}, no_tensors)
    with pytest.raises(ClipbenchError, match="holds no tensors"):
        read_foreign_state(no_tensors, allow_pickle=True)


def test_other_architecture_names_differing_keys(micro, tmp_path, monkeypatch, capsys):
    src = paper_checkpoint(micro, tmp_path / "vit.pt")
    out = tmp_path / "imported"
    result = invoke(["import", src, "--arch", TINY_RN, "--out", out, "--allow-pickle"])
    assert_clipbench_error(result, str(src), TINY_RN, "does not match the architecture", "missing: transformer.resblocks.1.",
                           "unexpected: visual.class_embedding", "shape mismatch: ")
    code, _, stderr = run_main(["import", src, "--arch", TINY_RN, "--out", out, "--allow-pickle"], monkeypatch, capsys)
    assert code == 2 and stderr.splitlines() == [f"clipbench: error: {result.exception}"]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["vit.pt"]


def test_missing_source_and_unknown_architecture(micro, tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nope.pt"
    result = invoke(["import", missing, "--arch", MICRO, "--out", tmp_path / "o", "--allow-pickle"])
    assert_clipbench_error(result, str(missing), "does not exist")
    code, _, stderr = run_main(["import", missing, "--arch", MICRO, "--out", tmp_path / "o"], monkeypatch, capsys)
    assert code == 2 and stderr.splitlines() == [f"clipbench: error: checkpoint {missing} does not exist"]
    result = invoke(["import", missing, "--arch", "RN5O", "--out", tmp_path / "o"])
    assert_clipbench_error(result, "unknown model 'RN5O'")
    assert not (tmp_path / "o").exists()


def test_existing_non_empty_out_is_refused(micro, tmp_path):
    src = paper_checkpoint(micro, tmp_path / "c.pt")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = invoke(["import", src, "--arch", MICRO, "--out", out, "--allow-pickle"])
    assert_clipbench_error(result, str(out), "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    import_checkpoint(src, MICRO, empty, allow_pickle=True)  # an empty folder is fine
    assert (empty / WEIGHTS_FILE).exists()


@pytest.fixture
def clipbench_folder(micro, tmp_path):
    folder = tmp_path / "ours"
    save_checkpoint(micro, folder, {"stage": "test"})
    return folder


def test_export_openai_then_reimport_is_identical(micro, clipbench_folder, tmp_path):
    out = tmp_path / "export" / "epoch.pt"
    result = invoke(["export", clipbench_folder, "--out", out])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 1 and str(out) in result.output
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0 and isinstance(saved["name"], str)
    assert all(k.startswith("module.") for k in saved["state_dict"])
    assert "module.visual.conv1.weight" in saved["state_dict"] and "module.token_embedding.weight" in saved["state_dict"]
    assert [p.name for p in out.parent.iterdir()] == ["epoch.pt"], "no temporary file is left"
    again = import_checkpoint(out, MICRO, tmp_path / "again", allow_pickle=True)
    assert_same_state(again.model.state_dict(), micro.model.state_dict())


def test_export_safetensors(micro, clipbench_folder, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "export.safetensors"
    result = invoke(["export", clipbench_folder, "--out", out, "--format", "safetensors"])
    assert result.exit_code == 0, result.output
    with safe_open(str(out), framework="pt") as handle:
        assert handle.metadata()["architecture"] == MICRO
        keys = set(handle.keys())
    assert keys == set(micro.model.state_dict()) and not any(k.startswith("module.") for k in keys)
    assert_same_state(read_foreign_state(out), micro.model.state_dict())
    result = invoke(["import", out, "--arch", MICRO, "--out", tmp_path / "again"])
    assert result.exit_code == 0, result.output
    assert_same_state(load_checkpoint(tmp_path / "again").model.state_dict(), micro.model.state_dict())


def test_export_refuses_bad_input(clipbench_folder, tmp_path):
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"precious")
    assert_clipbench_error(invoke(["export", clipbench_folder, "--out", taken]), str(taken), "already exists")
    assert taken.read_bytes() == b"precious"
    assert_clipbench_error(invoke(["export", tmp_path / "nothing", "--out", tmp_path / "x.pt"]), "does not exist")
    with pytest.raises(ClipbenchError, match="unknown export format"):
        export_checkpoint(clipbench_folder, tmp_path / "x.pt", fmt="onnx")
    assert not (tmp_path / "x.pt").exists()


def test_half_precision_checkpoint_is_upcast_losslessly(micro, tmp_path):
    src = tmp_path / "fp16.pt"
    half = {"module." + k: v.half() for k, v in micro.model.state_dict().items()}
    torch.save({"epoch": 1, "name": "gpu-run", "state_dict": half, "optimizer": {}}, src)
    clip = import_checkpoint(src, MICRO, tmp_path / "out", allow_pickle=True)
    expected = {k: v.half().float() for k, v in micro.model.state_dict().items()}
    assert_same_state(clip.model.state_dict(), expected)
    assert json.loads((tmp_path / "out" / SIDECAR_FILE).read_text())["source_dtypes"] == ["float16"]


def test_imported_folder_serves_as_pretrained_weights(micro, tmp_path):
    out = tmp_path / "imported"
    import_checkpoint(paper_checkpoint(micro, tmp_path / "epoch_3.pt"), MICRO, out, allow_pickle=True)
    assert_same_state(create_model(MICRO, pretrained=str(out)).model.state_dict(), micro.model.state_dict())
    with pytest.raises(ClipbenchError, match="holds a clipbench-micro-vit model, not clipbench-tiny-rn"):
        create_model(TINY_RN, pretrained=str(out))
