"""Model (de)serialisation as numpy arrays (`np.savez`, loaded with allow_pickle=False) plus JSON metadata.

Nothing stored can run code: the blob holds only numeric arrays and the vocabulary as UTF-8 bytes, the
metadata is plain JSON, and loading checks the format, feature version, checksum, every array's name,
dtype, shape and finiteness before a model is built. Anything else is refused with ModelFormatError.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from learning.model import LearnedModel, TagKey

FORMAT = 1
FEATURES = "char-1-3grams/tfidf-sublinear-l2/v2"
_ARRAYS = {
    "vocabulary": np.uint8,
    "idf": np.float32,
    "coef": np.float32,
    "intercept": np.float64,
    "platt_a": np.float64,
    "platt_b": np.float64,
    "thresholds": np.float64,
    "veto": np.float64,
}
_SEPARATOR = b"\n"


class ModelFormatError(ValueError):
    """A stored model that is corrupt or was written for other features; the message says what is wrong."""


def dump(model: LearnedModel) -> tuple[dict[str, Any], bytes]:
    """(metadata JSON, arrays blob) for storing `model`."""
    vocabulary = _SEPARATOR.join(token.encode("utf-8") for token in model.vocabulary)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        vocabulary=np.frombuffer(vocabulary, dtype=np.uint8),
        idf=model.idf.astype(np.float32),
        coef=model.coef.astype(np.float32),
        intercept=model.intercept.astype(np.float64),
        platt_a=model.platt_a.astype(np.float64),
        platt_b=model.platt_b.astype(np.float64),
        thresholds=model.thresholds.astype(np.float64),
        veto=model.veto.astype(np.float64),
    )
    blob = buffer.getvalue()
    meta = {
        "format": FORMAT,
        "features": FEATURES,
        "labels": [list(label) for label in model.labels],
        "vocabulary_size": len(model.vocabulary),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    return meta, blob


def _labels(meta: Mapping[str, Any]) -> list[TagKey]:
    raw = meta.get("labels")
    if not isinstance(raw, list) or not raw:
        raise ModelFormatError("metadata 'labels' must be a non-empty list of [dimension, tag] pairs")
    labels: list[TagKey] = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) and x for x in item)):
            raise ModelFormatError(f"metadata label {item!r} is not a [dimension, tag] pair of names")
        labels.append((item[0], item[1]))
    return labels


def _arrays(blob: bytes) -> dict[str, NDArray[Any]]:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            if set(npz.files) != set(_ARRAYS):
                raise ModelFormatError(f"model arrays are {sorted(npz.files)}, expected {sorted(_ARRAYS)}")
            arrays = {name: npz[name] for name in _ARRAYS}
    except ModelFormatError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFormatError(f"model arrays cannot be read: {exc}") from None
    for name, dtype in _ARRAYS.items():
        if arrays[name].dtype != np.dtype(dtype):
            raise ModelFormatError(f"model array {name} has dtype {arrays[name].dtype}, expected {np.dtype(dtype)}")
        if arrays[name].dtype.kind == "f" and not np.isfinite(arrays[name]).all():
            raise ModelFormatError(f"model array {name} holds non-finite numbers")
    return arrays


def load(meta: Mapping[str, Any], blob: bytes) -> LearnedModel:
    """Rebuild a model from `dump`'s output; ModelFormatError when anything does not fit."""
    if meta.get("format") != FORMAT:
        raise ModelFormatError(
            f"model format {meta.get('format')!r} is not {FORMAT}; retrain with `kebiao learn train`"
        )
    if meta.get("features") != FEATURES:
        raise ModelFormatError(
            f"model was trained on features {meta.get('features')!r}, this version uses {FEATURES!r}; retrain it"
        )
    if meta.get("sha256") != hashlib.sha256(blob).hexdigest():
        raise ModelFormatError("model arrays do not match their checksum (corrupt or altered)")
    labels = _labels(meta)
    arrays = _arrays(blob)
    try:
        vocabulary = bytes(arrays["vocabulary"]).decode("utf-8").split("\n") if arrays["vocabulary"].size else []
    except UnicodeDecodeError:
        raise ModelFormatError("model vocabulary is not UTF-8") from None
    size, n_labels = len(vocabulary), len(labels)
    if meta.get("vocabulary_size") != size:
        raise ModelFormatError(f"model vocabulary has {size} tokens, metadata says {meta.get('vocabulary_size')!r}")
    expected = {
        "idf": (size,),
        "coef": (size, n_labels),
        "intercept": (n_labels,),
        "platt_a": (n_labels,),
        "platt_b": (n_labels,),
        "thresholds": (n_labels,),
        "veto": (n_labels,),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ModelFormatError(f"model array {name} has shape {arrays[name].shape}, expected {shape}")
    return LearnedModel(
        labels,
        vocabulary,
        arrays["idf"],
        arrays["coef"],
        arrays["intercept"],
        arrays["platt_a"],
        arrays["platt_b"],
        arrays["thresholds"],
        arrays["veto"],
    )
