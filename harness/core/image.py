"""The inference service's CPU step: pre-processing a generated RGB image with NumPy (which
releases the GIL for most of the work, as OpenCV does). Both the pipeline workload and the mock
server's `cpu` endpoints run it, so it lives below both."""

from __future__ import annotations

import os
import threading

import numpy as np

from harness.core.clock import now_ns


def preprocess(seq: int, side: int) -> tuple[int, str, float, bytes]:
    """Normalise, blur and downsample a generated image; returns (ns, where it ran, checksum,
    the tensor's bytes to POST). Module-level so a process pool can run it."""
    start = now_ns()
    y, x = np.ogrid[0:side, 0:side]
    image = np.stack([(x * 7 + y * 13 + seq + c * 85) % 256 for c in range(3)], axis=-1)
    pixels = image.astype(np.float32) / 255.0
    pixels = (pixels - pixels.mean(axis=(0, 1))) / (pixels.std(axis=(0, 1)) + 1e-6)
    blurred = (pixels[:-2, :-2] + pixels[1:-1, 1:-1] + pixels[2:, 2:] + pixels[:-2, 2:]
               + pixels[2:, :-2]) / 5.0
    small = blurred[::2, ::2]
    checksum = float(np.abs(small).sum())
    tensor = small.astype(np.float32).tobytes()
    elapsed = now_ns() - start
    return elapsed, f"{threading.current_thread().name}@{os.getpid()}", checksum, tensor


def jpeg(side: int, seed: int) -> bytes:
    """A photo-like JPEG of side × side pixels drawn from `seed` (smooth shapes plus sensor
    noise, so it compresses like a photo, not like a flat test card): the same bytes for the
    same seed. Needs OpenCV (the `service` extra): ImportError without it."""
    import cv2  # only here: the harness needs it for image bodies alone

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    image += rng.normal(0, 6, image.shape).astype(np.int16)
    ok, encoded = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {side}×{side} JPEG")
    return encoded.tobytes()
