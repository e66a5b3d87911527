"""A model's versions: its identity and lineage, as kept in its metadata (no torch, no Qt: the
application reads it to list versions and to know which images a model has learnt).

A model made from another one (normal images added, a threshold kept) is a new file, a new version.
Its metadata holds ``uuid`` (its identity) and ``lineage``::

    {"version": 2,
     "parent": {"file": NAME, "meta_sha256": SHA, "uuid": UUID or null},
     "history": [{"version": 2, "what": "added 3 normal images", "when": ISO time, "who": USER,
                  "images": [...], "rule": "..."}, ...]}

``history`` accumulates from the first version on; a model without ``lineage`` is version 1 (as
trained).  :func:`modelfile.next_version` writes it, with the parent file's metadata sha256.
"""

from __future__ import annotations

import datetime as _dt
import getpass
from typing import Dict, Optional, Sequence


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def lineage_ok(lin) -> bool:
    """Whether ``lin`` has the shape of a lineage (version >= 1, a list of entries, a parent or None)."""
    return (isinstance(lin, dict) and isinstance(lin.get("version"), int) and lin["version"] >= 1
            and isinstance(lin.get("history", []), list) and all(isinstance(h, dict) for h in lin.get("history", []))
            and (lin.get("parent") is None or isinstance(lin["parent"], dict)))


def lineage_of(meta: Dict) -> Dict:
    """A model's lineage (version 1, no parent, no history when the metadata has none)."""
    lin = meta.get("lineage")
    if not lineage_ok(lin):
        return {"version": 1, "parent": None, "history": []}
    return {"version": lin["version"], "parent": lin.get("parent"), "history": list(lin.get("history", []))}


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):      # no login name (some containers, services)
        return "unknown"


def history_entry(what: str, images: Sequence = (), rule: Optional[str] = None, **extra) -> Dict:
    """One line of the audit trail: what changed, when, who, with which images and rule."""
    entry = {"what": what, "when": now_iso(), "who": current_user(), "images": [str(p) for p in images]}
    if rule is not None:
        entry["rule"] = rule
    entry.update(extra)
    return entry


def already_learnt(meta: Dict) -> Dict[str, int]:
    """Images a model learnt by updates (path → version), from its lineage.  Their scores would no
    longer be out of sample, so they are not added twice."""
    out: Dict[str, int] = {}
    for h in lineage_of(meta)["history"]:
        if str(h.get("what", "")).startswith("added"):
            for p in h.get("images", []):
                out.setdefault(str(p), int(h.get("version", 0)))
    return out
