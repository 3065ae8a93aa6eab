import numpy as np
import pytest
from PIL import Image

from shm.data.datasets import LAYOUTS, DatasetError, iter_loaded, open_dataset, pair_folders


def _tree(root, image_dir, alpha_dir, trimap_dir, stems=("a", "b"), size=(12, 10)):
    rng = np.random.default_rng(0)
    for stem in stems:
        for folder, arr, suffix in ((image_dir, rng.integers(0, 255, (*size, 3), np.uint8), ".jpg"),
                                    (alpha_dir, rng.integers(0, 255, size, np.uint8), ".png"),
                                    (trimap_dir, np.full(size, 128, np.uint8), ".png")):
            if folder:
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / folder / f"{stem}{suffix}")


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_reads_its_tree(tmp_path, layout):
    images, alpha, trimap = LAYOUTS[layout]
    _tree(tmp_path, images[-1], alpha, trimap)
    samples = open_dataset(tmp_path, layout)
    assert [s.stem for s in samples] == ["a", "b"]
    a, source, t = samples[0].load()
    assert a.shape == (12, 10) and source.shape == (12, 10, 3)
    assert (t is None) == (trimap is None)


def test_p3m_public_subset_uses_blurred_images(tmp_path):
    _tree(tmp_path, "blurred_image", "mask", "trimap")
    assert open_dataset(tmp_path, "p3m")[0].source.parent.name == "blurred_image"


def test_wrong_layout_names_the_expected_folder(tmp_path):
    _tree(tmp_path, "images", "alphas", None)
    with pytest.raises(DatasetError, match="original"):
        open_dataset(tmp_path, "am2k")


def test_unknown_layout_lists_the_choices(tmp_path):
    with pytest.raises(DatasetError, match="p3m"):
        open_dataset(tmp_path, "coco")


def test_missing_alpha_names_the_file_or_is_skipped(tmp_path):
    _tree(tmp_path, "images", "alphas", None)
    (tmp_path / "alphas" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"b\.jpg has no alpha"):
        open_dataset(tmp_path)
    with pytest.warns(UserWarning, match="skipped"):
        assert [s.stem for s in open_dataset(tmp_path, skip_bad=True)] == ["a"]


def test_size_mismatch_and_unreadable_file(tmp_path):
    _tree(tmp_path, "images", "alphas", None)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "alphas" / "a.png")
    (tmp_path / "alphas" / "b.png").write_bytes(b"broken")
    samples = pair_folders(tmp_path / "images", tmp_path / "alphas")
    with pytest.raises(DatasetError, match=r"a\.jpg is 10x12 but its alpha"):
        list(iter_loaded(samples))
    with pytest.warns(UserWarning):
        assert list(iter_loaded(samples, skip_bad=True)) == []
    with pytest.raises(DatasetError, match=r"b\.png cannot be read"):
        samples[1].load()
