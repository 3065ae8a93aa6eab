"""A seeded mutation fuzz of the image loader: only ImageError, or a valid RGB array."""

import numpy as np
import pytest

from shm.inference.images import ImageError, load_image
from tests.fuzz import mutants, seed_files

COUNT = 5000  # about 3 s on one core; bench/fuzz_images.py runs many more


def test_seed_files_load():
    for fmt, data in seed_files():
        assert load_image(data).shape[2] == 3, fmt


@pytest.mark.filterwarnings("ignore")  # Pillow warns about corrupt EXIF and large images
def test_mutated_files_raise_only_image_error():
    loaded = rejected = 0
    unhandled = []
    for i, (fmt, data) in enumerate(mutants(COUNT, seed=0)):
        try:
            out = load_image(data)
        except ImageError:
            rejected += 1
            continue
        except Exception as e:  # the defect this test looks for
            unhandled.append(f"mutant {i} of a {fmt}: {type(e).__name__}: {e}"[:200])
            continue
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8, f"mutant {i}"
        assert out.shape[0] >= 1 and out.shape[1] >= 1
        loaded += 1
    assert not unhandled, "\n".join(unhandled[:10])
    assert loaded > COUNT // 20 and rejected > COUNT // 2  # mutations neither all fatal nor all harmless
