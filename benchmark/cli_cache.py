"""``clipbench cache``: list, verify and clean the artifact cache."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_common import default_cache_dir
from .errors import ClipbenchError


@click.group("cache")
def cache_group() -> None:
    """Inspect and clean the artifact cache."""


def _cache_root(cache_dir: Path | None) -> Path:
    root = Path(cache_dir or default_cache_dir())
    if not root.is_dir():
        raise ClipbenchError(f"cache directory {root} does not exist")
    return root


_cache_option = click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                             help="artifact cache [default: ~/.cache/clipbench]")


@cache_group.command("ls")
@_cache_option
def cache_ls(cache_dir: Path | None) -> None:
    """List artifacts with their size, parents and build time.

    \b
    Example:
      clipbench cache ls --cache-dir ~/.cache/clipbench
    """
    from tabulate import tabulate

    from .cache import list_artifacts

    rows = [(a["stage"], a["key"], f"{a['bytes'] / 2**20:.1f}", ",".join(f"{k}:{v}" for k, v in a["parents"].items()),
             a["build"].get("wall_s", "")) for a in list_artifacts(_cache_root(cache_dir))]
    click.echo(tabulate(rows, headers=("stage", "key", "MiB", "parents", "build s"), tablefmt="simple"))


@cache_group.command("verify")
@_cache_option
def cache_verify(cache_dir: Path | None) -> None:
    """Check every artifact against the sha256 digests recorded when it was built.

    Covers every kind: checkpoints and their sidecars, triggers, manifests, zero-shot
    classifiers, reference metrics, the converted datasets and the WordNet data. A mismatch is
    removed so it is recomputed by the next run that needs it.

    \b
    Example:
      clipbench cache verify
    """
    import shutil

    from .cache import list_artifacts, verify_artifact
    from .data.fashion_mnist import dataset_folders
    from .data.verified import check_verified_folder
    from .eda import wordnet_folders

    root = _cache_root(cache_dir)
    checked = [(f"{a['stage']}/{a['key']}", a["path"], verify_artifact(a["path"])) for a in list_artifacts(root)]
    checked += [(str(folder.relative_to(root)), folder, check_verified_folder(folder))
                for folder in dataset_folders(root) + wordnet_folders(root)]
    bad = [(name, folder, problem) for name, folder, problem in checked if problem]
    for name, folder, problem in bad:
        shutil.rmtree(folder, ignore_errors=True)
        click.echo(f"removed {name}: {problem}; it will be recomputed", err=True)
    click.echo(f"{len(checked) - len(bad)} of {len(checked)} artifacts verified")
    if bad:
        sys.exit(1)


#: Artifact kinds ``cache gc`` keeps: indexes of data sources, which no result names.
KEPT_BY_GC = ("source-index",)


@cache_group.command("gc")
@_cache_option
@click.option("--results-dir", "results_dirs", type=click.Path(path_type=Path), multiple=True, required=True,
              help="results folder whose cells are kept (repeatable)")
@click.option("--dry-run", is_flag=True, help="only print what would be removed")
def cache_gc(cache_dir: Path | None, results_dirs: tuple[Path, ...], dry_run: bool) -> None:
    """Remove artifacts that no result in RESULTS_DIR refers to, and leftovers of killed builds.

    Stored indexes of real-scale sources are kept (they describe data, not cells), and so is the
    resume state of an unfinished training stage (a rerun continues from it).

    Run it when no `clipbench run` is using the cache: a running cell's finished parents are not
    yet named by any result.

    \b
    Example:
      clipbench cache gc --results-dir results/tiny --dry-run
    """
    import shutil

    from .cache import ArtifactStore, leftovers, list_artifacts, referenced_keys

    root = _cache_root(cache_dir)
    for folder in results_dirs:
        if not folder.is_dir():
            raise ClipbenchError(f"--results-dir {folder} does not exist")
    keep = set().union(*(referenced_keys(folder) for folder in results_dirs))
    doomed = [a["path"] for a in list_artifacts(root)
              if (a["stage"], a["key"]) not in keep and a["stage"] not in KEPT_BY_GC]
    doomed += leftovers(ArtifactStore(root))
    freed = sum(f.stat().st_size for p in doomed for f in p.rglob("*") if f.is_file())
    for path in doomed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {path.relative_to(root)}")
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
    click.echo(f"{len(doomed)} entries, {freed / 2**20:.1f} MiB {'to free' if dry_run else 'freed'}")
