"""Data: trimap generation lives in ``shm.trimap``; compositing, datasets and augmentation here."""
