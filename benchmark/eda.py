"""EDA text augmentation (Wei & Zou, 2019, arXiv 1901.11196) with WordNet synonyms.

Four operations on the words of a caption: synonym replacement, random insertion of a synonym,
random swap, random deletion. CleanCLIP uses rates 0.1/0.1/0.1/0.1 and one augmented sentence,
which in EDA's reference code means one of the four operations chosen at random per caption
(docs/protocol.md); that is the default here.

WordNet comes from nltk's reader. Its data is found, in order: wherever nltk already finds it
(``nltk.download("wordnet")`` or ``NLTK_DATA``); else clipbench builds an nltk data folder from the
Debian packages ``wordnet-base`` and ``wordnet-sense-index`` (``/usr/share/wordnet``) inside its
cache, adding the ``lexnames`` file that nltk needs and Debian does not ship; the files' digests
are recorded and checked before each use (a damaged copy is built again).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from .atomic import atomic_folder
from .config import require
from .data.verified import seal_folder, usable
from .errors import ClipbenchError

DEBIAN_WORDNET = Path("/usr/share/wordnet")
#: The 45 WordNet 3.0 lexicographer files: number, name, syntactic category (lexnames(5WN)).
LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
]
_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
#: Function words EDA leaves alone (a short list of English articles, pronouns and prepositions).
STOP_WORDS = frozenset(
    "a an the this that these those my your his her its our their of on in at to for with by from and or but "
    "is are was were be been it i you he she we they me him them as into onto over under".split()
)
HOW_TO_GET = (
    "WordNet is needed for EDA: install the Debian packages wordnet-base and wordnet-sense-index, "
    "or run python -c \"import nltk; nltk.download('wordnet')\""
)


@dataclass(frozen=True)
class EdaConfig:
    """EDA rates; CleanCLIP's defense uses 0.1 for each and one augmented sentence."""

    synonym_rate: float = 0.1
    insert_rate: float = 0.1
    swap_rate: float = 0.1
    delete_prob: float = 0.1

    def validate(self) -> None:
        for name in ("synonym_rate", "insert_rate", "swap_rate", "delete_prob"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, f"EDA {name} must be in [0, 1], got {value}")


def _build_nltk_folder_from_debian(target: Path) -> Path:
    corpus = target / "corpora" / "wordnet"
    if usable(corpus, "the WordNet data"):
        return target
    if not (DEBIAN_WORDNET / "data.noun").exists():
        raise ClipbenchError(HOW_TO_GET)
    try:
        with atomic_folder(corpus) as tmp:
            for path in DEBIAN_WORDNET.iterdir():
                if path.is_file():
                    shutil.copy2(path, tmp / path.name)
            lines = [f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}" for i, name in enumerate(LEXNAMES)]
            (tmp / "lexnames").write_text("\n".join(lines) + "\n")
            seal_folder(tmp)
    except OSError:  # another process published it first
        if not (corpus / "lexnames").exists():
            raise
    return target


def wordnet_folders(cache_dir: Path) -> list[Path]:
    """The WordNet folders clipbench built in the cache (for ``clipbench cache verify``)."""
    folder = Path(cache_dir) / "nltk_data" / "corpora" / "wordnet"
    return [folder] if folder.exists() else []


@lru_cache(maxsize=1)
def wordnet(cache_dir: Optional[str] = None):
    """nltk's WordNet reader, with its data found or built as the module docstring says."""
    try:
        import nltk
        from nltk.corpus import wordnet as wn
    except ImportError:
        raise ClipbenchError("EDA needs nltk: pip install nltk") from None
    try:
        wn.ensure_loaded()
        return wn
    except LookupError:
        pass
    base = Path(cache_dir or os.environ.get("CLIPBENCH_CACHE") or Path.home() / ".cache" / "clipbench")
    folder = _build_nltk_folder_from_debian(base / "nltk_data")
    if str(folder) not in nltk.data.path:
        nltk.data.path.insert(0, str(folder))
    import warnings

    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    try:
        with warnings.catch_warnings():  # the Debian data has no multilingual tables; EDA needs none
            warnings.simplefilter("ignore", UserWarning)
            return WordNetCorpusReader(str(folder / "corpora" / "wordnet"), None)
    except (LookupError, OSError) as error:
        raise ClipbenchError(f"cannot read WordNet in {folder}: {error}") from None


class Eda:
    """Seeded EDA over captions; synonyms come from WordNet and are cached per word."""

    def __init__(self, config: EdaConfig = EdaConfig(), seed: int = 0, cache_dir: Optional[str] = None):
        config.validate()
        self.config = config
        self.random = random.Random(seed)
        self.wordnet = wordnet(cache_dir)
        self._synonyms: dict[str, list[str]] = {}

    def synonyms(self, word: str) -> list[str]:
        if word not in self._synonyms:
            found = []
            for synset in self.wordnet.synsets(word):
                for lemma in synset.lemmas():
                    name = re.sub(r"[^a-z ]", "", lemma.name().replace("_", " ").replace("-", " ").lower()).strip()
                    if name and name != word and name not in found:
                        found.append(name)
            self._synonyms[word] = found
        return self._synonyms[word]

    def _replace(self, words: list[str], count: int) -> list[str]:
        out = list(words)
        candidates = [w for w in dict.fromkeys(words) if w not in STOP_WORDS]
        self.random.shuffle(candidates)
        replaced = 0
        for word in candidates:
            options = self.synonyms(word)
            if options:
                choice = self.random.choice(options)
                out = [choice if w == word else w for w in out]
                replaced += 1
            if replaced >= count:
                break
        return out

    def _insert(self, words: list[str], count: int) -> list[str]:
        out = list(words)
        for _ in range(count):
            for _attempt in range(10):
                options = self.synonyms(self.random.choice(words)) if words else []
                if options:
                    out.insert(self.random.randint(0, len(out)), self.random.choice(options))
                    break
        return out

    def _swap(self, words: list[str], count: int) -> list[str]:
        out = list(words)
        for _ in range(count):
            if len(out) >= 2:
                i, j = self.random.sample(range(len(out)), 2)
                out[i], out[j] = out[j], out[i]
        return out

    def _delete(self, words: list[str]) -> list[str]:
        if len(words) <= 1:
            return list(words)
        kept = [w for w in words if self.random.random() > self.config.delete_prob]
        return kept or [self.random.choice(words)]

    def __call__(self, caption: str) -> str:
        """One augmented version of ``caption`` (one EDA operation, chosen at random)."""
        words = re.sub(r"[^a-z0-9' ]", " ", caption.lower()).split()
        if not words:
            return caption
        n = len(words)
        rates = (self.config.synonym_rate, self.config.insert_rate, self.config.swap_rate, self.config.delete_prob)
        enabled = [i for i, rate in enumerate(rates) if rate > 0]
        if not enabled:  # EDA's reference code skips an operation whose rate is 0
            return caption
        operation = self.random.choice(enabled)
        if operation == 0:
            words = self._replace(words, max(1, int(self.config.synonym_rate * n)))
        elif operation == 1:
            words = self._insert(words, max(1, int(self.config.insert_rate * n)))
        elif operation == 2:
            words = self._swap(words, max(1, int(self.config.swap_rate * n)))
        else:
            words = self._delete(words)
        return " ".join(words)

    def batch(self, captions: list[str]) -> list[str]:
        return [self(caption) for caption in captions]
