"""``clipbench show attack``: a PNG gallery of clean and triggered images."""

from __future__ import annotations

import numpy as np
import torch

from clipbench.attacks.badnet import BadNet, BadNetConfig
from clipbench.gallery import amplified_difference, one_per_class


def test_show_attack_writes_a_png(cli_runner, cache_dir, tmp_path):
    out = tmp_path / "gallery" / "badnet.png"
    done = cli_runner(["show", "attack", "badnet", "--preset", "micro", "--cache-dir", cache_dir, "--out", out])
    assert done.exit_code == 0, done.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob(".*tmp*")), "no temporary file is left behind"


def test_show_attack_rejects_a_non_png_name(cli_subprocess, cache_dir, tmp_path):
    done = cli_subprocess(["show", "attack", "badnet", "--preset", "micro", "--cache-dir", cache_dir,
                           "--out", tmp_path / "gallery.jpg"])
    assert done.returncode == 2 and done.stderr.startswith("clipbench: error: --out")
    assert not (tmp_path / "gallery.jpg").exists()


def test_amplified_difference_marks_only_the_trigger():
    attack = BadNet(BadNetConfig(patch_size=56), seed=1, image_size=16)
    attack.prepare()
    images = torch.zeros((1, 3, 16, 16), dtype=torch.uint8)
    ids = torch.tensor([0])
    diff = amplified_difference(images[0], attack.apply(images, ids)[0])
    footprint = attack.footprint(ids, 16)[0, 0].numpy()
    assert diff.max() == 1.0
    assert (diff[~footprint] == 0).all()


def test_one_per_class_picks_the_first_of_each_class():
    labels = np.array([3, 1, 3, 0, 1])
    assert one_per_class(labels, 4).tolist() == [3, 1, 0]
