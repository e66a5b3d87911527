import cv2
import numpy as np
import pytest

from helpers import texture
from inspector.core.errors import DatasetError, ImageReadError
from inspector.core.images import (DEFAULT_MAX_PIXELS, jpeg_reduction, list_images, max_pixels, read_image,
                                   read_images, read_mask)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
def test_formats_read_as_rgb_uint8(tmp_path, ext):
    bgr = np.zeros((20, 30, 3), np.uint8)
    bgr[..., 2] = 200                          # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / f"a{ext}"), bgr)
    img = read_image(tmp_path / f"a{ext}")
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    assert img[..., 0].mean() > 150 and img[..., 2].mean() < 50


def test_16_bit_grey_and_rgba(tmp_path):
    cv2.imwrite(str(tmp_path / "g16.png"), np.full((16, 16), 65535, np.uint16))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.full((16, 16, 4), 90, np.uint8))
    g = read_image(tmp_path / "g16.png")
    assert g.shape == (16, 16, 3) and g.max() == 255
    assert read_image(tmp_path / "rgba.png").shape == (16, 16, 3)


def test_unreadable_images_are_reported_and_skipped(tmp_path):
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    images, ok, skipped = read_images(sorted(tmp_path.iterdir()))
    assert len(images) == 1 and ok[0].name == "ok.png"
    reasons = {p.name: why for p, why in skipped}
    assert set(reasons) == {"broken.png", "empty.jpg"}
    assert "empty" in reasons["empty.jpg"]
    with pytest.raises(ImageReadError) as exc:
        read_image(tmp_path / "broken.png")
    assert "broken.png" in str(exc.value)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        list_images(tmp_path / "nope")


# -- header checks, decoding at reduced size, orientation (issue 14) --------------------------------

def _exif_jpeg(path, rgb: np.ndarray, orientation: int):
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    return path


def _marked(h=20, w=40) -> np.ndarray:
    """A dark image with a red square in its top-left corner, as stored."""
    img = np.full((h, w, 3), 30, np.uint8)
    img[:6, :6] = (255, 0, 0)
    return img


def _red_corner(img: np.ndarray):
    """Which corner of a displayed image holds the red square."""
    h, w = img.shape[:2]
    corners = {"top-left": img[:4, :4], "top-right": img[:4, w - 4:], "bottom-left": img[h - 4:, :4],
               "bottom-right": img[h - 4:, w - 4:]}
    return max(corners, key=lambda k: int(corners[k][..., 0].mean()) - int(corners[k][..., 1].mean()))


@pytest.mark.parametrize("orientation, shape, corner", [
    (1, (20, 40), "top-left"), (3, (20, 40), "bottom-right"),
    (6, (40, 20), "top-right"),          # a camera held upright: turned 90 degrees clockwise
    (8, (40, 20), "bottom-left")])
def test_exif_orientation_is_applied_as_viewers_do(tmp_path, orientation, shape, corner):
    img = read_image(_exif_jpeg(tmp_path / "o.jpg", _marked(), orientation))
    assert img.shape[:2] == shape
    assert _red_corner(img) == corner


def test_every_exif_orientation_matches_pillows_exif_transpose(tmp_path):
    from PIL import Image, ImageOps
    rgb = np.random.default_rng(0).integers(0, 255, (12, 20, 3), dtype=np.uint8)
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        Image.fromarray(rgb).save(tmp_path / f"{o}.png", exif=exif)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / f"{o}.png")).convert("RGB"))
        np.testing.assert_array_equal(read_image(tmp_path / f"{o}.png"), expected, err_msg=f"orientation {o}")


def test_a_mask_has_the_geometry_of_its_image(tmp_path):
    _exif_jpeg(tmp_path / "part.jpg", _marked(), 6)
    mask = np.zeros((20, 40), np.uint8)
    mask[:6, :6] = 255                                   # over the red square, as stored
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(mask).save(tmp_path / "part_mask.png", exif=exif)
    img, m = read_image(tmp_path / "part.jpg"), read_mask(tmp_path / "part_mask.png")
    assert m.shape == img.shape[:2]
    assert img[m][:, 0].mean() > 200                    # the mask still covers the red square
    assert read_mask(tmp_path / "part_mask.png", (80, 40)).shape == (80, 40)


def test_a_huge_jpeg_is_decoded_reduced_and_the_limit_counts_decoded_pixels(tmp_path, monkeypatch):
    wide = np.tile(texture(3, 300), (1, 30, 1))          # 300 x 9000: the longer side is over 2 x 4096
    cv2.imwrite(str(tmp_path / "wide.jpg"), wide)
    assert jpeg_reduction(9000, 300) == 2 and jpeg_reduction(6000, 4000) == 1 and jpeg_reduction(65000, 65000) == 8
    monkeypatch.setenv("INSPECTOR_MAX_PIXELS", str(1_000_000))      # full size is 2.7 megapixels
    img = read_image(tmp_path / "wide.jpg")
    assert img.shape == (150, 4500, 3)
    cv2.imwrite(str(tmp_path / "wide.png"), wide)         # PNG cannot be decoded reduced: over the limit
    with pytest.raises(ImageReadError, match="too large: 9000x300 pixels .*INSPECTOR_MAX_PIXELS"):
        read_image(tmp_path / "wide.png")


def test_the_pixel_limit_is_a_setting(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "a.png"), texture(1, 64))
    assert 64_000_000 <= DEFAULT_MAX_PIXELS <= 1_000_000_000 and max_pixels() == DEFAULT_MAX_PIXELS
    monkeypatch.setenv("INSPECTOR_MAX_PIXELS", "4000")
    with pytest.raises(ImageReadError, match="64x64 pixels"):
        read_image(tmp_path / "a.png")
    monkeypatch.setenv("INSPECTOR_MAX_PIXELS", "lots")
    with pytest.raises(ImageReadError, match="INSPECTOR_MAX_PIXELS='lots' is not a positive number"):
        read_image(tmp_path / "a.png")


def test_jpeg_pixels_are_libjpeg_turbos_as_before(tmp_path):
    # the strict decoder gives the very pixels OpenCV gave: models trained before score the same
    cv2.imwrite(str(tmp_path / "a.jpg"), cv2.resize(texture(5, 64), (120, 90)))
    before = cv2.cvtColor(cv2.imread(str(tmp_path / "a.jpg"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(read_image(tmp_path / "a.jpg"), before)


def test_a_png_with_its_exif_after_the_pixels_is_still_oriented(tmp_path):
    # the eXIf chunk may follow the image data; Pillow's header pass does not see it there
    import struct
    import zlib
    from PIL import Image
    rgb = np.random.default_rng(1).integers(0, 255, (12, 20, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6                                         # rotate 90 degrees clockwise to view
    payload = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif\0\0") else exif.tobytes()
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    data = (tmp_path / "plain.png").read_bytes()
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    end = data.rindex(b"IEND") - 4                          # before the IEND chunk's length field
    (tmp_path / "late.png").write_bytes(data[:end] + chunk + data[end:])
    assert Image.open(tmp_path / "late.png").info.get("exif") is None      # not seen from the header
    np.testing.assert_array_equal(read_image(tmp_path / "late.png"), np.rot90(rgb, -1))
    np.testing.assert_array_equal(read_image(tmp_path / "plain.png"), rgb)
