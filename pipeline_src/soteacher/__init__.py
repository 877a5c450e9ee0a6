"""soteacher: student-oriented teacher training for knowledge distillation, as a reproducible pipeline.

The package is cut by concept into layers; a module imports only from its own layer's package or from layers
below it, never above (tests/test_layers.py checks every import, with no exception). Packages that share a layer
do not import each other.
"""

__version__ = "0.1.0"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),  # io, layout (every path), ranks, launch, devices, locks, tracking (MLflow), DVC lookups, compute
    ("data",),  # data sets: registry, readers, preparation, loading, on-device augmentation
    ("models",),  # the zoo
    ("training",),  # the one loop, its state (resume), parallel (ranks), evaluation, metrics, optimiser, averages
    ("teachers", "methods"),  # teacher terms, objective and jobs; KD methods
    ("students",),  # distill jobs and what they publish
    ("study",),  # config (schema + checks), identity, the job grids, plan, study links (DVC), rule resources
    ("report",),  # collect, statistics, the declared tables and figures
    ("cli",),  # the commands: `python -m soteacher ...`
    ("__main__",),
)
