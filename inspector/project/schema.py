"""The project database schema and its migrations.

``schema_version`` holds one row: the version the file was last migrated to.  Each entry of
:data:`MIGRATIONS` takes the database from version ``i`` to ``i + 1``; opening an older project
runs the missing ones in one transaction, opening a newer one is refused.
"""

from __future__ import annotations

import sqlite3
from typing import Callable, List

V1 = """
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE sources (
    id    INTEGER PRIMARY KEY,
    path  TEXT NOT NULL UNIQUE,
    kind  TEXT NOT NULL,               -- 'mvtec' or 'folder'
    split TEXT,                        -- for folders: 'train' or 'test'
    added TEXT NOT NULL
);
CREATE TABLE images (
    id          INTEGER PRIMARY KEY,
    path        TEXT NOT NULL UNIQUE,
    split       TEXT NOT NULL CHECK (split IN ('train', 'test')),
    source_id   INTEGER REFERENCES sources(id) ON DELETE SET NULL,
    defect_type TEXT,
    readable    INTEGER,               -- NULL: not read yet, 1: readable, 0: not readable
    error       TEXT,
    added       TEXT NOT NULL
);
CREATE TABLE labels (
    image_id  INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    label     TEXT NOT NULL CHECK (label IN ('good', 'anomalous')),
    source    TEXT NOT NULL,           -- 'dataset' (folder layout) or 'operator' (review)
    mask_path TEXT,
    updated   TEXT NOT NULL
);
CREATE TABLE models (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    path            TEXT NOT NULL,     -- relative to the project folder
    method          TEXT NOT NULL,
    backbone        TEXT NOT NULL,
    created         TEXT NOT NULL,
    image_threshold REAL NOT NULL,
    pixel_threshold REAL NOT NULL,
    meta_json       TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE results (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    score    REAL NOT NULL,
    verdict  TEXT NOT NULL CHECK (verdict IN ('normal', 'anomalous')),
    map_path TEXT,                     -- relative to the project folder
    created  TEXT NOT NULL,
    PRIMARY KEY (image_id, model_id)
);
CREATE INDEX results_model_score ON results(model_id, score);
CREATE INDEX images_split ON images(split);
"""


def _run(conn: sqlite3.Connection, script: str) -> None:
    """Run ``script`` statement by statement (``executescript`` would commit half-way)."""
    for stmt in script.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def _v1(conn: sqlite3.Connection) -> None:
    _run(conn, V1)


def _model_versions(conn: sqlite3.Connection) -> None:
    """Model versions: the model a version was made from (normal images added, a threshold kept)
    and one line saying what changed."""
    _run(conn, """
        ALTER TABLE models ADD COLUMN parent_id INTEGER REFERENCES models(id) ON DELETE SET NULL;
        ALTER TABLE models ADD COLUMN change TEXT
    """)


def _provenance(conn: sqlite3.Connection) -> None:
    """Label and threshold provenance: the dataset's ground truth is kept on the image, apart from
    the label in force (``labels``: the operator's decision, or the dataset's until one is made);
    an operator's label says who made it; every threshold moved in the project is recorded.

    Existing projects keep every label as it was.  Pre-existing labels are read conservatively:
    a label stored as ``'dataset'`` stays the dataset's (never counted as reviewed, even where a
    mask was painted on it), one stored as ``'operator'`` stays the operator's with ``who``
    unknown (NULL) and its time as recorded.  The dataset's ground truth is copied from the
    ``'dataset'`` labels; where an operator label has replaced it, it is read back from the
    image's defect type (the folder it came from: ``good`` or a defect), else left unknown.  A
    dataset mask is kept as the ground truth's only when it is the dataset's file (an absolute
    path), never a mask painted in the project (``masks/...``).
    """
    _run(conn, """
        ALTER TABLE images ADD COLUMN dataset_label TEXT CHECK (dataset_label IN ('good', 'anomalous'));
        ALTER TABLE images ADD COLUMN dataset_mask TEXT;
        ALTER TABLE labels ADD COLUMN who TEXT;
        CREATE TABLE threshold_changes (
            id       INTEGER PRIMARY KEY,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            value    REAL NOT NULL,
            previous REAL,
            who      TEXT,
            changed  TEXT NOT NULL,
            how      TEXT NOT NULL
        );
        CREATE INDEX threshold_changes_model ON threshold_changes(model_id, id);
        UPDATE images SET dataset_label = (SELECT l.label FROM labels l
                                           WHERE l.image_id = images.id AND l.source = 'dataset');
        UPDATE images SET dataset_label = CASE WHEN defect_type = 'good' THEN 'good' ELSE 'anomalous' END
            WHERE dataset_label IS NULL AND defect_type IS NOT NULL
              AND id IN (SELECT image_id FROM labels WHERE source = 'operator');
        UPDATE images SET dataset_mask = (SELECT l.mask_path FROM labels l WHERE l.image_id = images.id)
            WHERE dataset_label = 'anomalous'
              AND (SELECT l.mask_path FROM labels l WHERE l.image_id = images.id) NOT LIKE 'masks/%'
              AND (SELECT l.mask_path FROM labels l WHERE l.image_id = images.id) NOT LIKE 'masks\\%'
    """)


# MIGRATIONS[i] upgrades version i to i + 1.
MIGRATIONS: List[Callable[[sqlite3.Connection], None]] = [_v1, _model_versions, _provenance]


def latest() -> int:
    return len(MIGRATIONS)
