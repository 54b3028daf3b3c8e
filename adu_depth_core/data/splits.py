"""The dataset splits every reader, writer and config knows: train, val and test.

Its own module (no numpy, no torch) so the KITTI / DrivingStereo readers, the synthetic rig's seed ranges
and the data config share one definition without importing each other.
"""

SPLITS = ("train", "val", "test")
