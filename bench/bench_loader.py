"""Loader throughput: the on-device batched path (``Data.train_batches``) vs a torchvision PIL DataLoader.

Same uint8 CIFAR-shaped images (3×32×32), same batch size, same augmentation (RandomCrop(32, padding=4) +
horizontal flip + normalisation), one CPU thread and one process each. Prints one line per figure; the target
is a ratio of at least 5x on a CPU (on a GPU the batched path is far faster still).

    .venv/bin/python bench/bench_loader.py [--seconds 10] [--workers 0]
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image
from torchvision import transforms

from soteacher.data import Data, Split, cifar100

TARGET = 5.0


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images.permute(0, 2, 3, 1).numpy()  # N×H×W×C for PIL
        self.labels, self.transform = labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i], i


def rate(batches, seconds: float) -> float:
    """Images per second drawn from an endless batch iterator, after two warm-up batches."""
    for _ in range(2):
        next(batches)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x, _, _ = next(batches)
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def endless(make):
    while True:
        yield from make()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="timing window per path")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the torchvision baseline")
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.samples, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 100, (args.samples,), generator=g)

    mean, std = torch.tensor(cifar100.MEAN).view(1, 3, 1, 1), torch.tensor(cifar100.STD).view(1, 3, 1, 1)
    data = Data("bench", 100, Split(images, labels, None), Split(images[:2], labels[:2], None),
                mean * 255, std * 255, crop_padding=4, flip=True)
    gen = torch.Generator().manual_seed(0)
    ours = rate(endless(lambda: data.train_batches(args.batch_size, gen)), args.seconds)

    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(cifar100.MEAN, cifar100.STD)])
    loader = torch.utils.data.DataLoader(PILDataset(images, labels, transform), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True, num_workers=args.workers,
                                         persistent_workers=args.workers > 0)
    theirs = rate(endless(lambda: iter(loader)), args.seconds)

    print(f"on-device batched path (cpu, 1 thread, batch {args.batch_size}): {ours:,.0f} images/s")
    print(f"torchvision PIL DataLoader (RandomCrop+flip+ToTensor+Normalize, {args.workers} workers, "
          f"batch {args.batch_size}): {theirs:,.0f} images/s")
    ratio = ours / theirs
    print(f"ratio: {ratio:.1f}x (target >= {TARGET:.0f}x on CPU): {'met' if ratio >= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
