"""The JSON schema of a model file's metadata (``inspector.json``), and its checks.

:mod:`.modelfile` validates every file it reads against :data:`SCHEMA` before building anything,
so a crafted or damaged file is refused with one line naming the faulty field instead of failing
deep inside a method (a traceback) or allocating what a huge number asks for.  The writer
validates what it is about to write against the same schema, so Inspector never saves a file it
would refuse.

Extending: add a property to :data:`SCHEMA` (or to :data:`OPTIONS` for a method option, to
:data:`INDEX_PARAMS` for a search parameter).  Unknown top-level keys and unknown method options
are accepted (older Inspectors can read newer optional fields); what is declared here is checked.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import jsonschema

from .preprocess import INTERPOLATIONS, MAX_FRAME, MIN_FRAME
from .thresholds import METHODS as THRESHOLD_METHODS

SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
BIG = 1 << 40                       # a count no real model reaches, far below float precision


def _int(lo: int, hi: int, null: bool = False) -> Dict:
    return {"type": ["integer", "null"] if null else "integer", "minimum": lo, "maximum": hi}


def _num(lo: float, hi: float, exclusive_lo: bool = False) -> Dict:
    bound = {"exclusiveMinimum": lo} if exclusive_lo else {"minimum": lo}
    return {"type": "number", "maximum": hi, **bound}


_TEXT = {"type": "string", "maxLength": 4096}
_SCALAR = {"type": ["string", "number", "boolean", "null"], "maxLength": 4096}
# a method option: any JSON scalar, or a short array of numbers
OPTION_VALUE = {"anyOf": [_SCALAR, {"type": "array", "maxItems": 256, "items": {"type": "number"}}]}

# Method options with bounds: whatever the method, a value out of these is a damaged file.
OPTIONS = {
    "type": "object",
    "maxProperties": 256,
    "properties": {
        "strides": {"type": "array", "minItems": 1, "maxItems": 4, "items": {"enum": [4, 8, 16, 32]}},
        "d": _int(1, 1 << 16),
        "kernel": _int(1, 63),
        "coreset_ratio": _num(0, 1, exclusive_lo=True),
        "coreset_group_rows": _int(0, 1 << 40),
        "projection_dim": _int(1, 1 << 16),
        "index": {"type": "string", "maxLength": 64},
        "centroid_index": {"type": "string", "maxLength": 64},
        "nprobe": _int(1, 1 << 24, null=True),
        "ef_search": _int(1, 1 << 20),
        "b": _int(1, 1 << 16),
        "blur_sigma": _num(0, 1000),
        "batch_size": _int(1, 4096),
        "k_channels": _int(1, 1 << 16),
        "top_k": _int(1, 1 << 30),
        "max_centroids": _int(1, 1 << 30),
        "centroid_ratio": _num(0, 1, exclusive_lo=True),
        "chunk_rows": _int(1, 1 << 16),
        "shifts": _int(0, 64),
        "train_size": _int(1, 64),
        "infer_size": _int(1, 64),
        "agg_size": _int(1, 63),
        "beta": _num(0, 1e6, exclusive_lo=True),
        "eps": _num(0, 1e6, exclusive_lo=True),
        "kmeans_iterations": _int(1, 100_000),
        "kmeans_points_per_centroid": _int(1, 1 << 24),
        "hold_features_mb": _int(0, 1 << 30),
        "dense_cache_mb": _int(0, 1 << 30),
    },
    "additionalProperties": OPTION_VALUE,
}

# Search-time and build parameters of a nearest-neighbour index (search.py).
INDEX_PARAMS = {
    "type": "object",
    "maxProperties": 64,
    "properties": {
        "nlist": _int(1, 1 << 24, null=True),
        "nprobe": _int(1, 1 << 24, null=True),
        "k_factor": _num(1, 1 << 16),
        "pca_dim": _int(0, 1 << 16, null=True),      # 0: no projection (a small bank, search.py)
        "m": _int(1, 1024),
        "ef_construction": _int(1, 1 << 20),
        "ef_search": _int(1, 1 << 20),
    },
    "additionalProperties": _SCALAR,
}

THRESHOLD = {
    "type": "object",
    "required": ["value", "method", "n"],
    "properties": {
        "value": {"type": ["number", "null"]},          # null: not set
        "method": {"enum": list(THRESHOLD_METHODS)},
        "n": _int(0, BIG),
        "detail": _TEXT,
        "origin": {"type": "string", "maxLength": 256},     # provenance: the step that set it
        "when": {"type": "string", "maxLength": 64},
        "who": {"type": "string", "maxLength": 256},
    },
}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format", "format_version", "method", "backbone", "weights", "preprocess", "thresholds",
                 "state", "entries"],
    "properties": {
        "format": {"const": "inspector-model"},
        "format_version": _int(1, 1 << 16),
        "method": {"type": "string", "maxLength": 64},
        "backbone": {"type": "string", "maxLength": 64},
        "weights": {
            "type": "object",
            "required": ["kind", "sha256"],     # the hash is what proves the backbone is the same
            "properties": {
                "kind": {"enum": ["file", "env", "torchvision", "random"]},
                "path": {"type": ["string", "null"], "maxLength": 4096},
                "sha256": SHA256,
                "seed": _int(-(1 << 63), (1 << 64) - 1, null=True),
            },
        },
        "preprocess": {
            "type": "object",
            "required": ["resize"],
            "properties": {
                "resize": _int(MIN_FRAME, MAX_FRAME),
                "crop": _int(MIN_FRAME, MAX_FRAME, null=True),
                "interpolation": {"enum": list(INTERPOLATIONS)},
            },
        },
        "thresholds": {
            "type": "object",
            "required": ["image", "pixel"],
            "properties": {"image": THRESHOLD, "pixel": THRESHOLD},
        },
        "entries": {
            "type": "object",
            "maxProperties": 4096,
            "propertyNames": {"pattern": r"^(arrays/[A-Za-z0-9_.\-]{1,200}\.npy|blobs/[A-Za-z0-9_.\-]{1,200}\.bin)$"},
            "additionalProperties": SHA256,
        },
        "state": {
            "type": "object",
            "properties": {
                "options": OPTIONS,
                "bank_size": _int(0, BIG),
                "feature_dim": _int(1, 1 << 16),
                "index_params": INDEX_PARAMS,
                "centroid_index_params": INDEX_PARAMS,
                "grid": {"type": "array", "minItems": 2, "maxItems": 2, "items": _int(1, MAX_FRAME)},
                "k_channels": _int(1, 1 << 16),
                "n_centroids": _int(0, BIG),
                "model_bytes": _int(0, BIG),
                # a method's own entries are checked by its from_state (modelfile turns what it raises into one line)
            },
        },
        "feature_dim": _int(1, 1 << 16),
        "inspector_version": {"type": "string", "maxLength": 64},
        "created": {"type": "string", "maxLength": 64},
        "training": {"type": "object"},
        "timings": {"type": "object"},
        # model versions (the project's model history)
        "lineage": {
            "type": "object",
            "properties": {
                "version": _int(1, BIG),
                # the parent version's identity: file name, metadata sha256, uuid (lineage.py)
                "parent": {"type": ["object", "string", "null"], "maxProperties": 16, "maxLength": 4096},
                "history": {"type": "array", "maxItems": 100_000, "items": {"type": "object"}},
            },
        },
        # how images are registered to a reference before scoring
        "alignment": {"type": "object"},
    },
}


def _finite_number(checker, instance) -> bool:
    """JSON numbers as the schema means them: finite (a file's Infinity or NaN is not a number)."""
    return (jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(instance, "number")
            and (not isinstance(instance, float) or math.isfinite(instance)))


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number))
_VALIDATOR = _Validator(SCHEMA)


def first_error(meta) -> Optional[str]:
    """None when ``meta`` fits :data:`SCHEMA`, else one line: where and what."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(meta))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    message = " ".join(error.message.split())
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{where}: {message}"


def scoring_bytes(meta: Dict) -> int:
    """About the memory that scoring one image takes, from the metadata alone: the frame and the
    feature maps of the backbone's taps (before any method-specific work).  Lets a loader refuse a
    model this machine cannot run before building it."""
    from .backbones import REGISTRY
    pre = meta["preprocess"]
    size = int(pre.get("crop") or pre["resize"])
    spec = REGISTRY.get(meta.get("backbone", ""))
    strides = (meta.get("state", {}).get("options") or {}).get("strides") or [8, 16]
    features = sum((size // s) ** 2 * (spec.channels.get(s, 0) if spec else 2048) for s in strides)
    return 4 * (2 * 3 * size * size + 3 * features)
