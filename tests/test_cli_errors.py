"""Bad input through the console entry point: exit 2, one ``clipbench: error:`` line, nothing written."""

from __future__ import annotations

import pytest

CASES = {
    "unknown attack": (["--attack", "badnte"], "unknown attack 'badnte'; valid: badclip, badnet,"),
    "unknown defense": (["--defense", "none,finetun"], "unknown defense 'finetun'"),
    "unknown preset": (["--preset", "mikro"], "unknown preset 'mikro'; valid: micro, paper-abd,"),
    "unknown model": (["--model", "nosuch-model"], "unknown model 'nosuch-model'"),
    "unknown section": (["--set", "nosuch.key=1"], "unknown section"),
    "ill-typed value": (["--set", "victim.epochs=abc"], "victim.epochs: expected int, got 'abc'"),
    "invalid value": (["--set", "attack.patch_size=-3"], "attack.patch_size must be positive, got -3"),
    "malformed --set": (["--set", "epochs=3"], "expected section.key=value"),
    "bad seed list": (["--seed", "1,x"], "--seed: expected comma-separated integers"),
    "batch larger than its split": (["--set", "victim.batch_size=5000"], "victim.batch_size (5000) is larger than its split"),
    "defense batch larger than the clean split": (["--defense", "finetune", "--set", "defense.batch_size=3000"],
                                                  "defense.batch_size (3000) is larger than its split, scenario.defense_size"),
    "missing pretrained path": (["--pretrained", "/nonexistent/weights"], "--pretrained /nonexistent/weights: no such checkpoint"),
    "data path the scenario does not read": (["--set", "scenario.train_data=/tmp/pairs.csv"],
                                             "scenario.train_data is read only with scenario.dataset=pairs"),
    "empty seed between commas": (["--seeds", "0,,1"], "--seed: expected comma-separated integers, got '0,,1'"),
    "seed listed twice": (["--seeds", "0,1,0"], "--seed '0,1,0': 0 listed twice"),
    "attack listed twice": (["--attack", "badnet,badnet"], "attacks 'badnet,badnet': badnet listed twice"),
    "empty defense name": (["--defense", "none,,finetune"], "an empty name between commas"),
    "key no selected defense has": (["--defense", "none", "--set", "defense.lr=1e-4"],
                                    "--set defense.lr: no selected defense (none) has this key"),
    "sweep no selected defense has": (["--defense", "none", "--sweep", "defense.lr=1e-4,1e-3"],
                                      "--sweep defense.lr: no selected defense (none) has the key 'lr'"),
    "alpha outside [0, 1]": (["--attack", "blended", "--set", "attack.alpha=1.5"], "attack.alpha must be in [0, 1], got 1.5"),
    "patch larger than the image": (["--set", "attack.patch_size=300"], "attack.patch_size (300) is larger than the image"),
    "more poisoned pairs than the victim split": (["--set", "poison.count=100000"], "poison.count (100000) is larger than the victim split"),
    "missing pattern file": (["--attack", "blended", "--set", "attack.pattern=image", "--set", "attack.pattern_file=/nonexistent/kitty.png"],
                             "attack.pattern_file /nonexistent/kitty.png does not exist"),
    "pattern file not an image": (["--attack", "blended", "--set", "attack.pattern=image", "--set", "attack.pattern_file=/etc/hostname"],
                                  "attack.pattern_file /etc/hostname is not a readable image"),
    "negative loss weight": (["--defense", "cleanclip", "--set", "defense.inmodal_weight=-1"], "defense.inmodal_weight must be >= 0, got -1.0"),
    "pool larger than the data": (["--defense", "roclip", "--set", "defense.pool_size=100000"], "defense.pool_size (100000) is larger than the 256 training pairs"),
    "defense without a clean split": (["--defense", "finetune", "--set", "scenario.defense_size=0"], "defense finetune needs a clean defense split"),
    "drop fraction outside (0, 1)": (["--defense", "filter-similarity", "--set", "defense.drop_fraction=1.5"],
                                     "defense.drop_fraction must be in (0, 1), got 1.5"),
    "filter detector with k beyond the split": (["--defense", "filter-kdistance", "--set", "scenario.victim_size=9",
                                                 "--set", "poison.count=2", "--set", "victim.batch_size=4"],
                                                "detector.k=16 needs more than 16 reference points"),
    "unknown device": (["--device", "tpu9"], "--device 'tpu9' is not a device"),
    "CUDA without a GPU": (["--device", "cuda"], "CUDA is not available on this machine"),
    "non-finite value": (["--set", "victim.lr=inf"], "victim.lr: expected a finite number"),
    "unknown dataset": (["--set", "scenario.dataset=cifar"], "scenario.dataset 'cifar' is unknown"),
    "unknown target class": (["--set", "scenario.target=banana"], "scenario.target 'banana' is not a class of the scenario"),
    "more targets than evaluation images": (["--attack", "targeted", "--set", "attack.targets=500"],
                                            "attack.targets (500) is more than the 200 evaluation images"),
    "more targets than images of other classes": (["--attack", "targeted", "--set", "attack.adversarial_class=bag",
                                                   "--set", "attack.targets=190"],
                                                  "attack.targets (190) is more than the 179 evaluation images not of the adversarial class 'bag'"),
    "adversarial class equal to the targets' class": (["--attack", "targeted", "--set", "attack.target_class=bag",
                                                       "--set", "attack.adversarial_class=bag"],
                                                      "attack.adversarial_class equals attack.target_class ('bag')"),
    "pre-training scenario with zero pre-training pairs": (["--set", "scenario.threat_model=pretrain", "--set", "scenario.pretrain_size=0",
                                                            "--set", "scenario.victim_size=0", "--set", "poison.count=0"],
                                                           "scenario.victim_size is the pre-training data under threat_model=pretrain"),
}


def check_one_line_error(done, fragment: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("clipbench: error:"), lines[0]
    assert fragment in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, cli_subprocess, tmp_path):
    extra, fragment = CASES[case]
    results = tmp_path / "results"
    done = cli_subprocess(
        ["run", "--preset", "micro", "--cache-dir", tmp_path / "cache", "--results-dir", results, *extra]
    )
    check_one_line_error(done, fragment)
    assert not results.exists() or not any(results.iterdir()), "nothing is written for bad input"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_unknown_name_suggests_the_closest(cli_subprocess, tmp_path):
    done = cli_subprocess(["run", "--preset", "micro", "--attack", "badnte", "--results-dir", tmp_path / "r",
                           "--cache-dir", tmp_path / "c"])
    check_one_line_error(done, "Did you mean 'badnet'?")


def test_results_dir_that_cannot_be_created(cli_subprocess, tmp_path):
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a folder")
    results = blocker / "results"
    done = cli_subprocess(
        ["run", "--preset", "micro", "--cache-dir", tmp_path / "cache", "--results-dir", results]
    )
    check_one_line_error(done, f"results directory {results} is not writable")
    assert blocker.read_text() == "not a folder"
    assert not list(tmp_path.rglob("*.json")), "no result files written"


def test_usage_errors_from_click_are_one_line_too(cli_subprocess):
    done = cli_subprocess(["list", "nothing"])
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipbench: error:")
    assert "Traceback" not in done.stderr


def test_synthetic_data_with_no_writer_is_one_line(cli_subprocess, tmp_path):
    done = cli_subprocess(["data", "synthetic", "--out", tmp_path / "synth", "--pairs", "10", "--workers", "0"])
    check_one_line_error(done, "--workers must be >= 1, got 0")
    assert not (tmp_path / "synth").exists()


def test_every_command_has_examples_and_every_option_a_help_line():
    import click

    from clipbench.cli import cli

    def commands(group, path):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, path + [name])
            else:
                yield " ".join(path + [name]), command

    for name, command in commands(cli, ["clipbench"]):
        assert "Example" in (command.help or ""), f"{name} --help has no example"
        bare = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
        assert not bare, f"{name}: options without help: {bare}"


def test_file_system_errors_name_the_file_and_the_reason():
    import errno

    from clipbench.cli import describe_os_error

    full = OSError(errno.ENOSPC, "No space left on device", "/data/cache/victim/x/model.safetensors")
    assert describe_os_error(full) == "no space left on the device holding /data/cache/victim/x/model.safetensors"
    assert describe_os_error(OSError(errno.EACCES, "Permission denied", "/shared/results")) == "permission denied: /shared/results"
    assert describe_os_error(OSError(errno.EIO, "Input/output error", "/x")) == "/x: Input/output error"


def test_a_results_dir_that_is_a_file_is_named_as_such(cli_subprocess, tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("keep me")
    done = cli_subprocess(["run", "--preset", "micro", "--cache-dir", tmp_path / "cache", "--results-dir", blocker])
    check_one_line_error(done, f"results directory {blocker} is a file, not a folder")
    assert blocker.read_text() == "keep me"
