"""Progress output: bars in a terminal, plain lines in logs, nothing with --quiet."""

from __future__ import annotations

import io

import pytest

from clipbench.progress import PlainProgress, mode, progress


def test_plain_lines_carry_stage_count_postfix_rate_and_time_left():
    stream = io.StringIO()
    bar = PlainProgress(total=4, desc="train poisoned victim", unit="step", stream=stream, every=0)
    bar.update(1)
    bar.set_postfix(loss="2.345")
    bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("train poisoned victim: 1/4 step (25%)")
    assert "loss=2.345" in lines[1] and "left" in lines[1] and "elapsed" in lines[1]
    assert lines[-1].startswith("train poisoned victim: 2/4 step (50%)")
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_lines_come_at_their_interval_and_short_work_ends_silently():
    stream = io.StringIO()
    for _ in PlainProgress(range(100), desc="evaluate", unit="batch", stream=stream, every=60):
        pass
    assert stream.getvalue() == "", "work shorter than the interval and than 2 s writes no line"


@pytest.mark.parametrize("value, expected", [("lines", "lines"), ("off", "off"), ("bar", "bar"), ("nonsense", "lines")])
def test_mode_follows_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("CLIPBENCH_PROGRESS", value)
    assert mode() == expected  # under pytest stderr is not a terminal: auto means lines


def test_off_writes_nothing(monkeypatch, capsys):
    monkeypatch.setenv("CLIPBENCH_PROGRESS", "off")
    monkeypatch.setenv("CLIPBENCH_PROGRESS_INTERVAL", "0")
    with progress(total=3, desc="x") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_a_run_logged_to_a_file_has_no_control_characters_and_quiet_has_no_progress(cli_subprocess, fresh_cache_dir, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("CLIPBENCH_PROGRESS_INTERVAL", "0")
    args = ["run", "--preset", "micro", "--defense", "none,finetune", "--cache-dir", fresh_cache_dir,
            "--results-dir", tmp_path / "r"]
    done = cli_subprocess(args, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    assert "pretrain clean model: 1/" in done.stderr and "matrix: 2/2 cell (100%)" in done.stderr
    quiet = cli_subprocess(["--quiet", *args, "--force"], timeout=600)
    assert quiet.returncode == 0, quiet.stderr
    assert "step" not in quiet.stderr and "matrix:" not in quiet.stderr
    assert "CA top-1 %" in quiet.stdout, "the results table is printed"
    both = cli_subprocess(["--quiet", "--verbose", "list", "attacks"])
    assert both.returncode == 2 and "exclude each other" in both.stderr
