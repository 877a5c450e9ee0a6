"""Synthetic images from the paper's mixed-feature data model (Def. 3.1), with known p*(x).

A vocabulary of ``num_features`` features; feature v is a fixed pattern of ``patch_size``² pixels
(a random colour modulated by a random binary texture) and carries its own label distribution
p(y | v): mass ``purity_v`` on a home class (v mod C) and the rest spread by a Dirichlet draw,
with purity_v ~ U[feature_purity_min, 1].
An image places ``features_per_image`` distinct features into distinct cells of a patch grid over a
noisy grey background. Its true label distribution is the mean of its features' distributions,
p*(x) = (1/m) Σ_j p(y | v_j), and the observed label is one draw from p*(x). Everything follows from
``seed``.

With ``same_class_prob`` = s > 0, an image's features share one home class with probability s (drawn among the
features of its first feature's home class), else they are drawn as above. Mixing features of different home
classes caps max p*(x) near 1/2 for m = 2; s sets how many inputs are learnable to a confident p* (E[max p*]) while
the rest stay ambiguous, a mixed-feature distribution all the same.
"""

from __future__ import annotations

import torch


def generate(cfg: dict, val_size: int = 0) -> dict[str, torch.Tensor]:
    """Return uint8 images (N, 3, H, W), int64 labels and float32 p*(x) for the train and test splits.

    ``cfg`` is ``data.synthetic``. With ``val_size`` > 0 a third split, val, is drawn after the other two
    from the same generator, so train and test are the same with or without it.
    """
    g = torch.Generator().manual_seed(int(cfg["seed"]))
    c, v, m = cfg["num_classes"], cfg["num_features"], cfg["features_per_image"]
    size, patch = cfg["image_size"], cfg["patch_size"]
    grid = size // patch
    if m > grid * grid:
        raise ValueError(f"data.synthetic.features_per_image={m} exceeds the {grid}x{grid} patch grid")
    if m > v:
        raise ValueError(f"data.synthetic.features_per_image={m} exceeds num_features={v}")
    same_class = float(cfg.get("same_class_prob", 0.0))
    if same_class > 0 and v // c < m:
        raise ValueError(f"data.synthetic.same_class_prob > 0 needs features_per_image={m} features per home class; "
                         f"num_features={v} gives {v // c} per class of {c}: raise num_features to {m * c} or more")

    # a feature = its own colour times its own binary texture: easy to tell apart for a small CNN
    colours = torch.rand(v, 3, 1, 1, generator=g)
    textures = (torch.rand(v, 1, patch, patch, generator=g) < 0.5).float()
    patterns = colours * (0.4 + 0.6 * textures)
    purity = cfg["feature_purity_min"] + (1 - cfg["feature_purity_min"]) * torch.rand(v, generator=g)
    # Dirichlet(1, …, 1) = normalised Exponential(1) draws; drawn from ``g`` so the data depend on the seed only
    spread = -torch.log(torch.rand(v, c, generator=g).clamp_min(1e-12))
    spread = spread / spread.sum(1, keepdim=True)
    home = torch.nn.functional.one_hot(torch.arange(v) % c, c).float()
    feature_label_dist = purity[:, None] * home + (1 - purity[:, None]) * spread

    out: dict[str, torch.Tensor] = {}
    sizes = [("train", cfg["train_size"]), ("test", cfg["test_size"])] + ([("val", val_size)] if val_size > 0 else [])
    for split, n in sizes:
        feats = torch.stack([torch.randperm(v, generator=g)[:m] for _ in range(n)])
        if same_class > 0:  # drawn only then: the data of s = 0 are those of a release without the option
            coherent = torch.rand(n, generator=g) < same_class
            for i in torch.nonzero(coherent).flatten().tolist():
                mates = torch.arange(int(feats[i, 0]) % c, v, c)  # the features of the first one's home class
                feats[i] = mates[torch.randperm(len(mates), generator=g)[:m]]
        cells = torch.stack([torch.randperm(grid * grid, generator=g)[:m] for _ in range(n)])
        images = 0.5 + cfg["noise_std"] * torch.randn(n, 3, size, size, generator=g)
        for j in range(m):
            rows, cols = (cells[:, j] // grid) * patch, (cells[:, j] % grid) * patch
            noise = cfg["noise_std"] * torch.randn(n, 3, patch, patch, generator=g)
            for i in range(n):
                r, k = int(rows[i]), int(cols[i])
                images[i, :, r:r + patch, k:k + patch] = patterns[feats[i, j]] + noise[i]
        pstar = feature_label_dist[feats].mean(1)
        labels = torch.multinomial(pstar, 1, generator=g).squeeze(1)
        out[f"{split}_images"] = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        out[f"{split}_labels"] = labels
        out[f"{split}_pstar"] = pstar
    return out


def bayes_reference(pstar: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The Bayes-optimal classifier argmax p*(x) on one split, in percent.

    ``bayes_acc``: its accuracy on the observed labels; ``expected_max_pstar``: its expected accuracy,
    mean max_y p*(y|x). A net that fits a split's labels beyond the latter is fitting label noise.
    """
    bayes_acc = (pstar.argmax(1) == labels).double().mean().item()
    expected = pstar.double().max(1).values.mean().item()
    return {"bayes_acc": 100 * bayes_acc, "expected_max_pstar": 100 * expected}
