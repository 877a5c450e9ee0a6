"""soteacher: student-oriented teacher training for knowledge distillation, as a reproducible pipeline."""

__version__ = "0.1.0"
