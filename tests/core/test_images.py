import cv2
import numpy as np
import pytest

from inspector.core.errors import DatasetError, ImageReadError
from inspector.core.images import list_images, read_image, read_images


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
