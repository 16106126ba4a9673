"""Labelled text for fine-tuning an encoder: the built-in offline set, a user's CSV, the metrics, and
the TF-IDF + logistic-regression baseline every fine-tune is compared with.

The built-in set ("stdlib-docs") is made from text that installs with Python itself: the docstrings
of 93 standard-library modules, each labelled with the family its module belongs to (``FAMILIES``:
files, text, numbers, internet, formats, data structures, concurrency). How it is built:

1. For each module, its own docstring and those of its public functions and classes and of the
   public methods of those classes, where the member is defined by that module (its ``__module__``
   is the module or its C accelerator: ``_struct`` counts for ``struct``). Inherited docstrings are
   not used (``obj.__doc__``, never ``inspect.getdoc``), so a subclass never repeats its base's text.
2. Each docstring is cut into paragraphs at blank lines; whitespace is collapsed to single spaces;
   paragraphs of fewer than 40 or more than 700 characters are dropped.
3. A paragraph found under two families is dropped (it says nothing about either); a repeated one
   is kept once.
4. Each family is shuffled (``random.Random(SPLIT_SEED)``, after sorting) and cut to at most
   ``PER_CLASS`` paragraphs, then split 80 / 10 / 10 into train / validation / test within each
   family, so the three splits are disjoint and every family is in each with the same proportions.

With Python 3.11 this gives 2,653 paragraphs (332 to 400 per family; 2,123 / 265 / 265). The text
depends on the Python version installed, so the counts are recorded beside every fine-tune.
It is learnable but not trivial: many paragraphs are generic ("Return True if the object is
closed"), and TF-IDF with logistic regression scores 78.5% on the test split.

A user's CSV has the columns ``text`` and ``label`` and is split the same way (80 / 10 / 10 within
each label, seed ``SPLIT_SEED``).
"""
from __future__ import annotations

import csv
import importlib
import inspect
import io
import random
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

SPLIT_SEED = 0        # never change: the shipped metrics depend on this exact split
PER_CLASS = 400       # at most this many paragraphs per family, so no family outweighs the others
MIN_CHARS, MAX_CHARS = 40, 700
FRACTIONS = (0.8, 0.1, 0.1)   # train / validation / test, within each class

FAMILIES: dict[str, tuple[str, ...]] = {
    "files": ("os", "os.path", "shutil", "pathlib", "glob", "fnmatch", "tempfile", "stat", "filecmp", "io",
              "zipfile", "tarfile", "gzip", "bz2", "lzma", "fileinput"),
    "text": ("re", "string", "textwrap", "difflib", "unicodedata", "codecs", "locale", "gettext", "shlex"),
    "numbers": ("math", "cmath", "decimal", "fractions", "statistics", "random", "numbers"),
    "internet": ("socket", "ssl", "http.client", "http.server", "http.cookiejar", "http.cookies", "urllib.request",
                 "urllib.parse", "email.message", "email.utils", "email.parser", "email.policy",
                 "email.headerregistry", "email.mime.text", "smtplib", "imaplib", "poplib", "ftplib", "mailbox"),
    "formats": ("json", "csv", "pickle", "xml.etree.ElementTree", "xml.dom.minidom", "xml.sax", "configparser",
                "plistlib", "base64", "binascii", "struct", "sqlite3", "tomllib"),
    "data structures": ("collections", "collections.abc", "itertools", "functools", "heapq", "bisect", "array",
                        "copy", "enum", "dataclasses", "contextlib", "operator"),
    "concurrency": ("threading", "asyncio", "asyncio.tasks", "asyncio.events", "asyncio.locks", "asyncio.queues",
                    "asyncio.streams", "asyncio.subprocess", "multiprocessing", "multiprocessing.pool",
                    "multiprocessing.managers", "concurrent.futures", "queue", "subprocess", "sched", "selectors",
                    "signal"),
}
# Where a module's functions are defined under another name (os.stat.__module__ is "posix").
_ALIASES = {"os": ("posix", "posixpath", "genericpath"), "os.path": ("posixpath", "genericpath")}

# A user's CSV: limits that keep a fine-tune on this CPU within minutes and the page responsive.
MAX_CSV_BYTES = 20 * 1024 * 1024
MAX_ROWS = 50_000
MAX_TEXT_CHARS = 5_000
MAX_CLASSES = 50
MIN_PER_CLASS = 5      # so each class can appear in train, validation and test


class DatasetError(ValueError):
    """A labelled text set cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class TextSet:
    """A labelled text set with its fixed splits. Labels are indices into ``labels``."""

    name: str
    labels: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    val: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    description: str

    def texts(self, split: str) -> list[str]:
        """The texts of ``split`` ("train", "val" or "test")."""
        return [t for t, _ in getattr(self, split)]

    def targets(self, split: str) -> list[int]:
        """The label indices of ``split``."""
        return [y for _, y in getattr(self, split)]

    def summary(self) -> dict[str, Any]:
        """Name, labels and split sizes, for metrics.json and the page."""
        return {"name": self.name, "labels": list(self.labels), "train": len(self.train), "val": len(self.val),
                "test": len(self.test), "description": self.description}


# -- the built-in set --------------------------------------------------------------------------------------
def _owned(obj: Any, module: str) -> bool:
    """Whether ``obj`` is defined by ``module`` (or its C accelerator / the aliases above)."""
    where = getattr(obj, "__module__", None)
    if not isinstance(where, str):
        return False
    names = {module, *_ALIASES.get(module, ())}
    return where in names or where.lstrip("_") in names or where.startswith(module + ".")


def _docstrings(module_name: str) -> list[str]:
    """The module's own docstring and its members' (see the module docstring, step 1), in name order."""
    module = importlib.import_module(module_name)
    docs = [module.__doc__]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or not _owned(obj, module_name):
            continue
        if inspect.isclass(obj):
            docs.append(obj.__doc__)
            for member_name, member in sorted(vars(obj).items()):
                if member_name.startswith("_"):
                    continue
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                if callable(member) or isinstance(member, property):
                    docs.append(member.__doc__)
        elif callable(obj):
            docs.append(obj.__doc__)
    return [inspect.cleandoc(d) for d in docs if isinstance(d, str) and d.strip()]


def _paragraphs(doc: str) -> list[str]:
    """Blank-line separated paragraphs, whitespace collapsed, of MIN_CHARS..MAX_CHARS characters."""
    out = []
    for para in re.split(r"\n\s*\n", doc):
        text = " ".join(para.split())
        if MIN_CHARS <= len(text) <= MAX_CHARS:
            out.append(text)
    return out


def _split(by_label: dict[int, list[str]], seed: int, cap: int | None) -> tuple[tuple, tuple, tuple]:
    """80 / 10 / 10 within each label (after sorting and a seeded shuffle); each split shuffled too."""
    rng = random.Random(seed)
    train, val, test = [], [], []
    for label in sorted(by_label):
        texts = sorted(by_label[label])
        rng.shuffle(texts)
        texts = texts[:cap] if cap else texts
        n_val = max(1, round(len(texts) * FRACTIONS[1]))
        n_test = max(1, round(len(texts) * FRACTIONS[2]))
        n_train = len(texts) - n_val - n_test
        train += [(t, label) for t in texts[:n_train]]
        val += [(t, label) for t in texts[n_train:n_train + n_val]]
        test += [(t, label) for t in texts[n_train + n_val:]]
    for part in (train, val, test):
        rng.shuffle(part)
    return tuple(train), tuple(val), tuple(test)


@lru_cache(maxsize=1)
def builtin_dataset() -> TextSet:
    """The built-in "stdlib-docs" set: standard-library docstring paragraphs labelled by module family
    (how it is built and split: this module's docstring). Deterministic for a Python version."""
    labels = tuple(FAMILIES)
    seen: dict[str, set[int]] = defaultdict(set)
    for index, family in enumerate(labels):
        for module_name in FAMILIES[family]:
            for doc in _docstrings(module_name):
                for text in _paragraphs(doc):
                    seen[text].add(index)
    by_label: dict[int, list[str]] = defaultdict(list)
    for text, owners in seen.items():
        if len(owners) == 1:    # a paragraph under two families is ambiguous: dropped
            by_label[next(iter(owners))].append(text)
    train, val, test = _split(by_label, SPLIT_SEED, PER_CLASS)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    description = (f"docstring paragraphs of {sum(map(len, FAMILIES.values()))} Python {version} standard-library "
                   f"modules, labelled by module family; at most {PER_CLASS} per family, split 80/10/10 within "
                   f"each family with seed {SPLIT_SEED}")
    return TextSet("stdlib-docs", labels, train, val, test, description)


# -- a user's CSV --------------------------------------------------------------------------------------------
def read_csv_dataset(data: bytes, name: str = "upload.csv") -> TextSet:
    """A TextSet from CSV bytes with the columns ``text`` and ``label`` (any others are ignored).

    DatasetError, in words, for a file that is too large, not UTF-8 text, not CSV, missing a column,
    with empty cells, too few examples of a label, a single label, or too many labels.
    """
    if len(data) > MAX_CSV_BYTES:
        raise DatasetError(f"{name} is {len(data) / 2**20:.1f} MB; the most a CSV may be is "
                           f"{MAX_CSV_BYTES // 2**20} MB")
    if not data.strip():
        raise DatasetError(f"{name} is empty; it needs a header row 'text,label' and one example per row")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{name} is not UTF-8 text; save it as a UTF-8 CSV file") from None
    if "\x00" in text:
        raise DatasetError(f"{name} is not a text file (it contains null bytes); give a CSV file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "text" not in columns or "label" not in columns:
            found = ", ".join(repr(c) for c in columns[:8]) or "none"
            raise DatasetError(f"{name} needs the columns 'text' and 'label' in its header row; it has {found}")
        reader.fieldnames = columns
        rows = []
        for line, row in enumerate(reader, start=2):
            if len(rows) >= MAX_ROWS:
                raise DatasetError(f"{name} has more than {MAX_ROWS:,} rows; the most a fine-tune here takes is "
                                   f"{MAX_ROWS:,}")
            sample, label = (row.get("text") or "").strip(), (row.get("label") or "").strip()
            if not sample or not label:
                raise DatasetError(f"row {line} of {name} has an empty text or label; every row needs both")
            if len(sample) > MAX_TEXT_CHARS:
                raise DatasetError(f"row {line} of {name} has a text of {len(sample):,} characters; the most is "
                                   f"{MAX_TEXT_CHARS:,} (an encoder reads only its first few hundred words)")
            rows.append((sample, label))
    except csv.Error as err:
        raise DatasetError(f"{name} could not be read as CSV: {err}") from None
    return _from_rows(rows, name)


def _from_rows(rows: Sequence[tuple[str, str]], name: str) -> TextSet:
    """Check the label counts and split the rows (80 / 10 / 10 within each label)."""
    counts: dict[str, int] = defaultdict(int)
    for _, label in rows:
        counts[label] += 1
    if len(counts) < 2:
        raise DatasetError(f"{name} has {'no rows' if not counts else 'a single label'}; classification needs at "
                           "least two labels")
    if len(counts) > MAX_CLASSES:
        raise DatasetError(f"{name} has {len(counts):,} different labels; the most is {MAX_CLASSES} (is the label "
                           "column free text?)")
    few = sorted(label for label, n in counts.items() if n < MIN_PER_CLASS)
    if few:
        shown = ", ".join(repr(label[:30]) for label in few[:5])
        raise DatasetError(f"{name}: each label needs at least {MIN_PER_CLASS} examples (to appear in the train, "
                           f"validation and test splits); too few for {shown}{' and more' if len(few) > 5 else ''}")
    labels = tuple(sorted(counts))
    index = {label: i for i, label in enumerate(labels)}
    by_label: dict[int, list[str]] = defaultdict(list)
    for sample, label in dict.fromkeys(rows):   # a repeated (text, label) row once: never in two splits
        by_label[index[label]].append(sample)
    train, val, test = _split(by_label, SPLIT_SEED, None)
    description = f"{name}: {len(rows):,} rows, {len(labels)} labels, split 80/10/10 within each label with seed " \
                  f"{SPLIT_SEED}"
    return TextSet(name, labels, train, val, test, description)


# -- metrics and the baseline ---------------------------------------------------------------------------------
def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1 (the mean over classes of F1; a class never predicted nor present counts 0)
    and the confusion matrix (rows: true class, columns: predicted class) as plain numbers."""
    true, pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if true.shape != pred.shape or true.size == 0:
        raise ValueError("metrics need as many predictions as labels, and at least one")
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    precision_den, recall_den = confusion.sum(axis=0), confusion.sum(axis=1)
    f1_den = precision_den + recall_den            # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted + actual)
    f1 = np.divide(2 * tp, f1_den, out=np.zeros_like(tp), where=f1_den > 0)
    return {"accuracy": float(tp.sum() / true.size), "macro_f1": float(f1.mean()),
            "confusion": confusion.tolist()}


def tfidf_baseline(dataset: TextSet) -> dict[str, Any]:
    """TF-IDF (words and word pairs, sublinear term frequency) + logistic regression (C=10), fitted on
    the train split and scored on the test split: the bar a fine-tuned encoder has to clear."""
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
    features = vectorizer.fit_transform(dataset.texts("train"))
    classifier = LogisticRegression(C=10.0, max_iter=3000).fit(features, dataset.targets("train"))
    predicted = classifier.predict(vectorizer.transform(dataset.texts("test")))
    metrics = classification_metrics(dataset.targets("test"), predicted.tolist(), len(dataset.labels))
    return {"model": "TF-IDF (1-2 grams) + logistic regression", **metrics}
