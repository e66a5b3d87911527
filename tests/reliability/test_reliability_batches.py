"""No input stops a batch: ``inspector predict`` goes on past every bad argument and file.

Each case is generated at test time (tiny files) and passed between good images; the batch must
score every good image, give the bad input a ``skipped: REASON`` row in results.csv, list it on
stderr, and never print a traceback.  Writing results to a full disk or a read-only folder gives
one clear line (exit 2) and leaves nothing half-written.
"""

import csv
import os
import shlex
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import texture, write_rgb
from inspector.cli import main

REPO = Path(__file__).resolve().parents[2]
FAST = ["--backbone", "resnet18", "--random-weights", "--resize", "64", "--coreset", "0.5", "-q"]
COLUMNS = ["path", "status", "score", "verdict", "threshold", "model", "overlay", "note"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    for i in range(8):
        write_rgb(d / f"{i:03d}.png", texture(i))
    m = tmp_path_factory.mktemp("model") / "m.inspector"
    assert main(["train", str(d), "-o", str(m), *FAST]) == 0
    return m


@pytest.fixture
def goods(tmp_path):
    """A folder of 3 good images (one in a sub-folder with a name taken twice) and a lone one."""
    d = tmp_path / "goods"
    files = [write_rgb(d / "dup.png", texture(20)), write_rgb(d / "a.png", texture(21)),
             write_rgb(d / "sub" / "dup.png", texture(22))]
    return d, files, write_rgb(tmp_path / "lone.png", texture(23))


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width×height pixels and holds no image data (69 bytes for 60000²)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 8)) + chunk(b"IEND", b""))


def _missing(t):
    return t / "no_such_file.png", "not found"


def _empty_folder(t):
    (t / "empty").mkdir()
    return t / "empty", "folder holds no images"


def _folder_named_png(t):
    (t / "x.png").mkdir()
    return t / "x.png", "folder holds no images"


def _symlink_loop(t):
    os.symlink(t / "loop_b.png", t / "loop_a.png")
    os.symlink(t / "loop_a.png", t / "loop_b.png")
    return t / "loop_a.png", "symbolic link loop"


def _broken_symlink(t):
    os.symlink(t / "gone.png", t / "dangling.png")
    return t / "dangling.png", "broken symbolic link"


def _garbage(t):
    (t / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    return t / "garbage.png", ""


def _truncated(t):
    ok, buf = cv2.imencode(".png", texture(5))
    (t / "truncated.png").write_bytes(buf.tobytes()[: len(buf) // 2])
    return t / "truncated.png", ""


def _empty_file(t):
    (t / "zero.png").write_bytes(b"")
    return t / "zero.png", "file is empty"


def _text_file(t):
    (t / "notes.txt").write_text("a note, not an image")
    return t / "notes.txt", ""


def _huge_header(t):
    (t / "huge.png").write_bytes(png_header(60000, 60000))
    return t / "huge.png", ""


def _tiny(t):
    cv2.imwrite(str(t / "tiny.png"), np.zeros((4, 4, 3), np.uint8))
    return t / "tiny.png", "too small"


CASES = {
    "missing-path": _missing,
    "empty-folder": _empty_folder,
    "folder-named-x.png": _folder_named_png,
    "symlink-loop": _symlink_loop,
    "broken-symlink": _broken_symlink,
    "garbage-bytes": _garbage,
    "truncated-png": _truncated,
    "empty-file": _empty_file,
    "text-file": _text_file,
    "60000x60000-header": _huge_header,
    "4x4-image": _tiny,
}


def rows_of(out: Path):
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_predict_goes_on_past_a_bad_input(model, goods, tmp_path, case, capsys):
    folder, good_files, lone = goods
    bad, words = CASES[case](tmp_path)
    out = tmp_path / "out"
    rc = main(["predict", str(model), str(folder), str(bad), str(lone), "-o", str(out), "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err
    rows = rows_of(out)
    assert [r["path"] for r in rows] == [str(p) for p in sorted(good_files)] + [str(bad), str(lone)]
    by_path = {r["path"]: r for r in rows}
    for p in good_files + [lone]:                           # every good image scored
        r = by_path[str(p)]
        assert r["status"] == "ok" and float(r["score"]) > 0 and r["verdict"] in ("normal", "anomalous")
        assert r["model"] == "m.inspector" and (out / r["overlay"]).is_file()
    r = by_path[str(bad)]
    assert r["status"].startswith("skipped: ") and words in r["status"]
    assert r["score"] == r["verdict"] == r["overlay"] == ""
    assert f"{bad}: " in captured.err                       # listed on stderr
    assert "4 image(s) inspected" in captured.out and "1 skipped" in captured.out
    # dup.png and sub/dup.png: two overlays, told apart by the overlay column
    assert by_path[str(good_files[0])]["overlay"] != by_path[str(good_files[2])]["overlay"]


def test_every_skipped_file_is_listed_or_pointed_to(model, goods, tmp_path, capsys):
    folder, good_files, _ = goods
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(25):
        (bad / f"b{i:02d}.png").write_bytes(b"nope")
    out = tmp_path / "out"
    assert main(["predict", str(model), str(folder), str(bad), "-o", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    listed = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(listed) == 21 and "and 5 more" in listed[-1] and str(out / "results.csv") in listed[-1]
    assert sum(r["status"].startswith("skipped") for r in rows_of(out)) == 25


def test_nothing_readable_is_an_error_with_the_csv_written(model, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(model), str(tmp_path / "nope.png"), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "none of the inputs could be inspected" in err and "Traceback" not in err
    assert [r["status"] for r in rows_of(out)] == ["skipped: not found"]


def _predict_cmd(model, inputs, out):
    return [sys.executable, "-m", "inspector", "predict", str(model), *map(str, inputs), "-o", str(out), "-q"]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO))


def _assert_one_clear_line(proc, words):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inspector: error: cannot write") and words in lines[0], lines


@pytest.mark.skipif(sys.platform != "linux", reason="a file-size limit (RLIMIT_FSIZE) stands in for a full disk")
def test_a_disk_that_fills_up_gives_one_line_and_nothing_half_written(model, goods, tmp_path):
    import resource
    import signal
    folder, _, lone = goods
    out = tmp_path / "out"

    def small_files():               # every write past 2 kB fails, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    proc = subprocess.run(_predict_cmd(model, [folder, lone], out), env=_env(), capture_output=True, text=True,
                          preexec_fn=small_files, timeout=600)
    _assert_one_clear_line(proc, "File too large")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]    # no half-written file stays
    assert not (out / "results.csv").exists()


def _namespace_mount(tmp_path, options):
    """A tmpfs mounted with ``options`` inside a user+mount namespace (no privileges needed)."""
    if sys.platform != "linux" or shutil.which("unshare") is None:
        pytest.skip("needs Linux's unshare to mount a small or read-only folder without privileges")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o {options} tmpfs {tmp_path}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unprivileged mount namespaces are not allowed here ({probe.stderr.strip()})")


@pytest.mark.parametrize("kind, options, words", [
    ("full-disk", "size=16k", "No space left on device"),
    ("read-only-folder", "ro", "Read-only file system"),
], ids=["full-disk-tmpfs", "read-only-output"])
def test_output_on_a_full_or_read_only_file_system(model, goods, tmp_path, kind, options, words):
    folder, _, lone = goods
    out = tmp_path / "out"
    out.mkdir()
    _namespace_mount(out, options)
    script = (f"mount -t tmpfs -o {options} tmpfs {out} && "
              f"{shlex.join(_predict_cmd(model, [folder, lone], out))}; rc=$?; "
              f"ls -A {out} > {tmp_path / 'listing'}; exit $rc")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], env=_env(),
                          capture_output=True, text=True, timeout=600)
    _assert_one_clear_line(proc, words)
    left = (tmp_path / "listing").read_text().split()
    assert not [n for n in left if n.endswith(".tmp")] and "results.csv" not in left, left
