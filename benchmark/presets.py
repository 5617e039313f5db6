"""Presets: complete, named experiment settings (scenario, model, schedules, per-method overrides).

``tiny`` is the embedded default: real Fashion-MNIST images and a tiny open_clip ViT that clipbench
pretrains itself, runnable on a laptop CPU. Its calibration is in the README ("Calibration").
``micro`` is a few hundred samples and a micro model, for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .data.scenario import ScenarioConfig
from .evaluation_config import EvaluationConfig
from .registry import PRESETS
from .train_config import CYCLIP_ADAMW, PoisonConfig, Schedule, TrainConfig


@dataclass(frozen=True)
class Preset:
    """A named setting.

    ``defense_schedules`` maps a defense stage (``post_training``, ``training_time``) to the
    :class:`Schedule` every defense of that stage trains with at this scale, plugins included.
    ``own_schedule`` names the methods that keep their paper's schedule (their config defaults)
    on this preset. ``attack_overrides``/``defense_overrides`` map a method name to
    ``--set``-style values for this scale; a schedule field among them is a departure from the
    preset's schedule, recorded in the result with its origin. ``poison_overrides`` maps an attack
    name to ``poison.*`` values for that attack (its paper's poisoning rate, say); ``--set
    poison.*`` still comes last. ``excluded_attacks`` maps an attack that does not implant at this
    scale to the measurement that shows it: ``--attack all`` leaves it out (naming it still runs
    it) and ``clipbench list attacks`` prints the reason.
    """

    name: str
    description: str
    model: str
    pretrained: Optional[str]
    scenario: ScenarioConfig
    pretrain: TrainConfig
    poison: PoisonConfig
    victim: TrainConfig
    defense_schedules: dict[str, Schedule] = field(default_factory=dict)
    own_schedule: tuple[str, ...] = ()
    attack_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    defense_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    poison_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    excluded_attacks: dict[str, str] = field(default_factory=dict)
    evaluation: EvaluationConfig = EvaluationConfig()


def _register(preset: Preset) -> Preset:
    PRESETS.register(preset.name)(preset)
    return preset



# Attack geometry at 32 px: the papers' 16 px patch at 224 px scales to 2 px; the tiny preset uses
# 28 px at 224 (4 px at 32 px), the 4x4 patch that implants at this scale (README, "Calibration"). BadCLIP's patch
# search runs its paper's 50 epochs over 2,000 attacker images instead of 10K (CPU budget: 81 s); with 5
# epochs its patch implanted at 68.9% on the converged clean model (seed 0, results/calibration).
TINY_ATTACKS = {
    "badnet": {"patch_size": "28"},
    "label_consistent": {"patch_size": "28"},
    "badclip": {"patch_size": "28", "epochs": "50", "max_images": "2000"},
    "wanet": {"k": "32", "s": "1"},
}
# WaNet as the CLIP papers' code runs it (CleanCLIP, BadCLIP: k = the image size, one control point
# per pixel, s = 1) at the WaNet paper's poisoning rate (10%: 1,000 of the 10,000 victim pairs). The
# WaNet paper's own k=4, s=0.5 implanted at 10.1% with 300 poisoned and 31.2% with 1,000 (seed 0;
# README, "Calibration").
TINY_POISON = {"wanet": {"count": "1000"}}
# Label-consistent BadNet stays out of `--attack all`: it does not implant at this scale even with
# every target-class image poisoned (measured, seed 0). WaNet's strongest setting taken from a paper
# sits at the 90% threshold, below it on seed 1 (README, "Calibration").
TINY_EXCLUDED = {
    "wanet": "no-defense ASR 90.3%, 89.3% and 91.8% on seeds 0-2 with the CLIP papers' per-pixel field (k=32, s=1) "
             "at the WaNet paper's 10% rate, below 90% on seed 1; the WaNet paper's k=4, s=0.5: 10.1% (seed 0)",
    "label_consistent": "no-defense ASR 29.1% with 300 poisoned bags, 51.2% with 600 and 74.6% with all 989 bags "
                        "of the victim split (16/255 PGD perturbation, seed 0), short of 90%",
    "targeted": "targeted data poisoning is scored by its success on 16 target images, not by a trigger's ASR, and "
                "its share of the victim split is not calibrated on this preset",
}

# Defense schedules at tiny scale, beside the papers' values (each module's docstring):
# - post-training (finetune, cleanclip, abd, and any plugin): 5 epochs, batch 64 on the 5K clean
#   pairs at the victim's learning rate, 5e-4. The papers poison and defend at the same rate (1e-5
#   both, ABD Table I protocol), so the defense keeps that ratio; at lr 5e-5 no post-training
#   defense moved BadNet's ASR below 99% on the tiny preset (measured, seed 0).
# - training-time (roclip, safeclip, and any plugin) replace the victim's training, so they get
#   its schedule: 5 epochs, batch 128, lr 5e-4 (RoCLIP: 24 epochs, batch 512, lr 5e-5; SafeCLIP:
#   32 epochs). SafeCLIP departs: its code has no warmup steps, and its ``epochs`` count its
#   warm-ups, so 1 unimodal + 1 CLIP warm-up + 3 split epochs make the victim's 5.
# Method knobs at this scale: RoCLIP's pool is 2,000 captions of the 10K victim pairs (paper:
# 21,845 of 1M+); ABD crafts its patch for 200 steps.
TINY_SCHEDULES = {
    "post_training": Schedule(epochs=5, batch_size=64, lr=5e-4, warmup_steps=50),
    "training_time": Schedule(epochs=5, batch_size=128, lr=5e-4, warmup_steps=50),
}
TINY_DEFENSES = {
    "abd": {"craft_steps": "200"},
    "roclip": {"pool_size": "2000"},
    "safeclip": {"warmup_steps": "0", "unimodal_epochs": "1"},
}

# Clean model: 40 pretraining epochs on attribute captions (results/calibration/pretrain_convergence_*.json;
# README, "Calibration"), shipped as clipbench/weights/tiny-clean.safetensors (clipbench.shipped).
TINY = _register(
    Preset(
        name="tiny",
        description="Fashion-MNIST, tiny ViT pretrained by clipbench, CPU in minutes (embedded default)",
        model="clipbench-tiny-vit",
        pretrained=None,
        scenario=ScenarioConfig(pretrain_size=40000, victim_size=10000, defense_size=5000, eval_size=10000, target="bag",
                                captions="attributes"),
        pretrain=TrainConfig(epochs=40, batch_size=128, lr=5e-4, warmup_steps=100, seed=0),
        poison=PoisonConfig(count=300),
        victim=TrainConfig(epochs=5, batch_size=128, lr=5e-4, warmup_steps=50),
        defense_schedules=TINY_SCHEDULES,
        attack_overrides=TINY_ATTACKS,
        defense_overrides=TINY_DEFENSES,
        poison_overrides=TINY_POISON,
        excluded_attacks=TINY_EXCLUDED,
    )
)

# The pre-training threat model at tiny scale (RoCLIP's and SafeCLIP's setting; README, "The
# pre-training setting"): the victim and the training-time defenses train the tiny ViT from a random
# initialisation on the 10,000 victim pairs with the poison in them; the clean model, the baseline,
# trains the same way on the same pairs without it. The schedule is the victim's schedule of
# `tiny` (5 epochs, batch 128, lr 5e-4) for all three, post-training defenses keep tiny's
# post-training schedule, and the linear probe is on (RoCLIP reports it beside zero-shot accuracy).
# Targeted poisoning: 15 pairs per target (240 of the 10,000), the fewest of those measured that
# reach 80% success (seed 0: 10 per target 8/16 at CA 78.2%, 15 per target 15/16 at 72.5%, 25 per
# target 16/16 at 69.6%; BadNet's 300 pairs: ASR 99.99%, CA 79.3%; results/calibration/tiny-pretrain).
TINY_PRETRAIN_POISON = {"targeted": {"count": "240"}}
TINY_PRETRAIN_EXCLUDED = {
    name: "not calibrated on the pre-training setting; the RoCLIP paper's comparison uses BadNet and targeted poisoning"
    for name in ("blended", "sig", "badclip", "wanet", "label_consistent")
}

TINY_PRETRAIN = _register(
    Preset(
        name="tiny-pretrain",
        description="tiny's data and ViT, every model trained from scratch on the poisoned pairs (RoCLIP's setting, CPU)",
        model="clipbench-tiny-vit",
        pretrained=None,
        scenario=ScenarioConfig(pretrain_size=0, victim_size=10000, defense_size=5000, eval_size=10000, target="bag",
                                captions="attributes", threat_model="pretrain"),
        pretrain=TINY.victim,
        poison=TINY.poison,
        victim=TINY.victim,
        defense_schedules=TINY_SCHEDULES,
        attack_overrides=TINY_ATTACKS,
        defense_overrides=TINY_DEFENSES,
        poison_overrides=TINY_PRETRAIN_POISON,
        excluded_attacks=TINY_PRETRAIN_EXCLUDED,
        evaluation=EvaluationConfig(linear_probe=True),
    )
)

_MICRO_SCHEDULE = Schedule(epochs=1, batch_size=32, lr=1e-3, warmup_steps=2)

MICRO = _register(
    Preset(
        name="micro",
        description="a few hundred Fashion-MNIST pairs and a micro ViT, for tests (seconds)",
        model="clipbench-micro-vit",
        pretrained=None,
        scenario=ScenarioConfig(pretrain_size=512, victim_size=256, defense_size=128, eval_size=200, target="bag"),
        pretrain=TrainConfig(epochs=1, batch_size=64, lr=1e-3, warmup_steps=2, seed=0),
        poison=PoisonConfig(count=16),  # fits every attack: label-consistent needs 16 of the ~21 target images
        victim=TrainConfig(epochs=1, batch_size=64, lr=1e-3, warmup_steps=2),
        defense_schedules={"post_training": _MICRO_SCHEDULE, "training_time": _MICRO_SCHEDULE},
        defense_overrides={
            "abd": {"craft_steps": "3", "craft_batch_size": "16"},
            "roclip": {"pool_size": "64"},
            "safeclip": {"epochs": "3", "unimodal_epochs": "1", "clip_warmup_epochs": "1"},
        },
    )
)


# The ABD paper's Table I setting (docs/protocol.md, "The ABD Table I setting"):
# OpenAI RN50 poisoned by fine-tuning on a 500K-pair CC3M subset with 1,500 poisoned pairs
# (AdamW, batch 128, 5 epochs, lr 1e-5, cosine; warm-up 10,000 steps is CleanCLIP's training
# default, as the BadCLIP scripts do not state theirs), 100K clean CC3M defense pairs disjoint from
# the victim's, ImageNet-1K val with the 80 OpenAI templates and class names, target "banana".
# Post-training defenses (and plugins) run CleanCLIP's defense recipe, the paper's protocol (ABD,
# whose schedule is not published, included); training-time plugins get the victim's schedule;
# RoCLIP and SafeCLIP keep their papers' schedules (own_schedule). The data are the user's:
# --set scenario.train_data= and scenario.eval_data= (README, "The paper setting").
# The variants the CleanCLIP/BadCLIP code runs (docs/protocol.md, "Method variants of paper-abd").
PAPER_ABD_ATTACKS = {
    "badnet": {"pattern": "cleanclip_noise", "location": "random", "patch_size": "16"},
    "blended": {"pattern": "cleanclip_noise", "alpha": "0.2"},
    "badclip": {"patch_size": "16"},
}
PAPER_ABD_DEFENSES = {"cleanclip": {"augmentation": "autoaugment"}}

PAPER_ABD = _register(
    Preset(
        name="paper-abd",
        description="ABD Table I: OpenAI RN50, 500K CC3M pairs (1,500 poisoned), ImageNet-1K val (GPU, user data)",
        model="RN50",
        pretrained="openai",
        scenario=ScenarioConfig(dataset="pairs", pretrain_size=0, victim_size=500000, defense_size=100000,
                                eval_size=50000, target="banana", classnames="imagenet", templates="openai"),
        pretrain=TrainConfig(epochs=0),
        poison=PoisonConfig(count=1500),
        # the CleanCLIP/BadCLIP code poisons with its CyCLIP-derived trainer, optimizer included
        victim=TrainConfig(epochs=5, batch_size=128, lr=1e-5, warmup_steps=10000, **CYCLIP_ADAMW),
        defense_schedules={
            "post_training": Schedule(epochs=10, batch_size=64, lr=1e-5, warmup_steps=50),
            "training_time": Schedule(epochs=5, batch_size=128, lr=1e-5, warmup_steps=10000),
        },
        own_schedule=("roclip", "safeclip"),
        attack_overrides=PAPER_ABD_ATTACKS,
        defense_overrides=PAPER_ABD_DEFENSES,
    )
)



# RoCLIP's pre-training setting (Yang et al., NeurIPS 2023; README, "The pre-training setting"):
# ResNet-50 trained from scratch on 1M image-caption pairs sampled from CC3M with the poison in
# them, by the CyCLIP-derived trainer of its code (24 epochs, batch 512, lr 5e-5, no warm-up,
# AdamW 0.9/0.999/1e-8, no clipping) for the CLIP baseline (the victim) and the clean reference
# alike; RoCLIP and SafeCLIP keep their code's schedules (own_schedule: RoCLIP's pool of 21,845
# captions matched every 2nd epoch). Targeted poisoning: 16 targets x 100 adversarial captions (the
# code's notebook writes 100 per target); backdoors: 1,500 poisoned pairs, CleanCLIP's pre-training count
# (clipbench's choice; the 16 px patch as in paper-abd). Zero-shot on ImageNet-1K val with OpenAI's names and
# templates; no linear probe (it needs class labels, and CC3M has captions only). 100,000 clean
# defense pairs, as in paper-abd. Post-training defenses get CleanCLIP's
# recipe, as in paper-abd. The data are the user's (--set scenario.train_data=, eval_data=).
ROCLIP_CODE_SCHEDULE = TrainConfig(epochs=24, batch_size=512, lr=5e-5, warmup_steps=0, **CYCLIP_ADAMW)

PAPER_ROCLIP = _register(
    Preset(
        name="paper-roclip",
        description="RoCLIP's setting: RN50 from scratch on 1M CC3M pairs with the poison in them, ImageNet-1K val (GPU, user data)",
        model="RN50",
        pretrained=None,
        scenario=ScenarioConfig(dataset="pairs", pretrain_size=0, victim_size=1000000, defense_size=100000,
                                eval_size=50000, target="banana", classnames="imagenet", templates="openai",
                                threat_model="pretrain"),
        pretrain=ROCLIP_CODE_SCHEDULE,
        poison=PoisonConfig(count=1500),
        victim=ROCLIP_CODE_SCHEDULE,
        defense_schedules={
            "post_training": Schedule(epochs=10, batch_size=64, lr=1e-5, warmup_steps=50),
            "training_time": ROCLIP_CODE_SCHEDULE,
        },
        own_schedule=("roclip", "safeclip"),
        poison_overrides={"targeted": {"count": "1600"}},
        attack_overrides={"badnet": {"patch_size": "16"}},
    )
)
