"""Per-sample random crop (zero padding) and horizontal flip for a batch already on the device.

torchvision's v2 transforms draw one crop per batched tensor; KD recipes need one per image. Semantics
match torchvision's ``RandomCrop(size, padding=p)`` + ``RandomHorizontalFlip()`` on uint8 images: pad
with zeros, pick a uniform offset in [0, 2p] per axis, flip with probability ½.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator,
                     rows: slice | None = None, batch_size: int | None = None) -> torch.Tensor:
    """``rows``: ``images`` are these rows of a batch of ``batch_size``; the draws are those of the whole batch
    (one rank's shard is augmented as the same images in one process's batch)."""
    n, _, h, w = images.shape
    device = images.device
    drawn, rows = (n, slice(None)) if rows is None else (batch_size, rows)
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (drawn,), generator=generator, device=device)[rows]
        dx = torch.randint(0, 2 * padding + 1, (drawn,), generator=generator, device=device)[rows]
        rows_ = (dy[:, None] + torch.arange(h, device=device))[:, :, None]  # (n, h, 1)
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, :]  # (n, 1, w)
        batch = torch.arange(n, device=device)[:, None, None]
        images = padded.permute(0, 2, 3, 1)[batch, rows_, cols].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(drawn, generator=generator, device=device)[rows] < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(3), images)
    return images.contiguous()
