"""Real-scale scenarios (``dataset="pairs"``): lazy image-caption splits and a classification test set.

Nothing is decoded or tokenized up front: a split holds a :class:`RowView` (which rows of which
source) and captions as strings; images are decoded per batch at the model's resolution by
:class:`clipbench.data.images.LazyImages`. The number of listed rows that resolved to readable
images is reported per source (``ScenarioData.sources``) and stored in every result. Poisoned
captions are a random one of the 80 OpenAI ImageNet templates filled with the target's class
name, and BadCLIP's natural captions are the victim split's captions that name the target, as
the papers' poisoning code writes them (docs/protocol.md, "Poisoned captions").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import require
from ..errors import ClipbenchError
from .captions import PoisonCaptions
from .images import RowView
from .pairs import PairSet
from .splits import ScenarioData, split_rows

#: Specs that name a hub dataset rather than a path.
_HUB_PREFIX = "hf:"


def _check_spec(value: str, key: str) -> None:
    require(bool(value), f"scenario.{key} is empty; the pairs dataset needs --set scenario.{key}=PATH "
                         "(a CSV/TSV, webdataset shards, an image folder or hf:NAME)")
    if value.startswith(_HUB_PREFIX) or any(ch in value for ch in "*?{"):
        return
    require(Path(value).expanduser().exists(), f"scenario.{key}: {value} does not exist")


def validate_pairs_config(config: Any) -> None:
    """Checks of a ``pairs`` scenario that need no data: the sources are named and exist."""
    _check_spec(config.train_data, "train_data")
    _check_spec(config.eval_data, "eval_data")
    if config.defense_data:
        _check_spec(config.defense_data, "defense_data")
    require(config.classnames in ("imagenet", "source"),
            f"scenario.classnames {config.classnames!r} is unknown; valid: imagenet, source")
    require(config.templates in ("openai", "simple"), f"scenario.templates {config.templates!r} is unknown; valid: openai, simple")
    if config.classnames == "imagenet":
        names = imagenet_classnames()
        require(config.target in names, f"scenario.target {config.target!r} is not an ImageNet class name (OpenAI names)")


def imagenet_classnames() -> tuple[str, ...]:
    """OpenAI's 1,000 ImageNet class names, as open_clip ships them."""
    from ..torchvision_compat import import_open_clip

    import_open_clip()
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)


def zero_shot_templates(kind: str) -> tuple[str, ...]:
    """``openai``: the 80 OpenAI ImageNet templates (open_clip's copy) as format strings."""
    if kind == "simple":
        return ("a photo of a {}.",)
    from ..torchvision_compat import import_open_clip

    import_open_clip()
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)


def _source_report(source: Any) -> dict:
    report = source.report
    return {"listed": report.listed, "resolved": report.resolved, "skipped": report.skipped,
            "skipped_examples": list(report.skipped_examples)}


def load_pairs_scenario(config: Any, cache_dir: Optional[Path] = None) -> ScenarioData:
    """Open the sources and carve the splits (seeded, disjoint) of a ``pairs`` scenario; with
    ``cache_dir`` the sources' indexes are stored there and reused by later processes."""
    from .sources import open_classes, open_pairs

    max_skipped = int(config.max_skipped) if config.max_skipped >= 1 else float(config.max_skipped)
    options: dict = {"max_skipped": max_skipped, "cache_dir": cache_dir}
    options.update({key: value for key, value in (("image_key", config.image_key), ("caption_key", config.caption_key)) if value})
    train = open_pairs(config.train_data, **options)
    sizes = [config.pretrain_size, config.victim_size] + ([] if config.defense_data else [config.defense_size])
    if sum(sizes) > len(train):
        raise ClipbenchError(
            f"scenario.train_data resolved {len(train)} readable pairs; the splits ask for {sum(sizes)} "
            f"(pretrain {config.pretrain_size} + victim {config.victim_size}"
            + ("" if config.defense_data else f" + defense {config.defense_size}") + "); lower the sizes with --set")
    splits = split_rows(len(train), sizes, config.split_seed)
    sources = {"train_data": _source_report(train)}
    if config.defense_data:
        defense_source = open_pairs(config.defense_data, **options)
        sources["defense_data"] = _source_report(defense_source)
        if config.defense_size > len(defense_source):
            raise ClipbenchError(f"scenario.defense_data resolved {len(defense_source)} readable pairs; "
                                 f"scenario.defense_size asks for {config.defense_size}")
        defense = _pairs(defense_source, split_rows(len(defense_source), [config.defense_size], config.split_seed + 3)[0])
    else:
        defense = _pairs(train, splits[2])
    classes = open_classes(config.eval_data, max_skipped=max_skipped, cache_dir=cache_dir)
    sources["eval_data"] = _source_report(classes)
    classnames = imagenet_classnames() if config.classnames == "imagenet" else tuple(classes.classnames)
    labels = np.asarray(classes.labels, dtype=np.int64)
    if labels.size and labels.max() >= len(classnames):
        raise ClipbenchError(f"scenario.eval_data has {labels.max() + 1} classes but {len(classnames)} class names "
                             f"({config.classnames}); use --set scenario.classnames=source")
    if config.target not in classnames:
        raise ClipbenchError(f"scenario.target {config.target!r} is not a class of {config.eval_data}; "
                             f"valid: {', '.join(classnames[:20])}{' ...' if len(classnames) > 20 else ''}")
    eval_rows = np.sort(np.random.default_rng(config.split_seed + 2).permutation(len(labels))[: config.eval_size])
    evaluation = PairSet(images=RowView(classes, eval_rows), labels=labels[eval_rows],
                         captions=[f"a photo of a {classnames[int(label)]}." for label in labels[eval_rows]],
                         ids=np.asarray(classes.ids, dtype=np.int64)[eval_rows])
    victim = _pairs(train, splits[1])
    return ScenarioData(
        pretrain=_pairs(train, splits[0]), victim=victim, defense=defense, evaluation=evaluation,
        classnames=classnames, templates=zero_shot_templates(config.templates),
        target_index=classnames.index(config.target), sources=sources,
        poison_captions=PoisonCaptions(config.target, zero_shot_templates("openai"), (config.target,),
                                       corpus=victim.captions, corpus_name=f"the victim split of {config.train_data}"),
    )


def _pairs(source: Any, rows: np.ndarray) -> PairSet:
    """A lazy split: captions as strings, images as a view, labels unknown (-1)."""
    rows = np.asarray(rows, dtype=np.int64)
    captions = source.captions
    return PairSet(images=RowView(source, rows), labels=np.full(len(rows), -1, dtype=np.int64),
                   captions=[captions[int(r)] for r in rows], ids=np.asarray(source.ids, dtype=np.int64)[rows])
