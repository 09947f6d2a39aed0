"""Post-hoc debiasing of frozen features: ``python -m python.postprocess --method deepminmax --dataset adult``.

Features Z come from a features file (--features), from a trained run's encoder F (--run), or, with neither, from a
vanilla baseline trained here first (OUT/encoder). DeepMinMax (DESIGN §6) learns Z̃ = h_θ(Z) on the train part;
a logistic regression predicts the target from Z (before) and from Z̃ (after) on the test part (the bias-free test
split where the dataset has one), beside the bias leakage of each. Writes OUT/metrics.json and OUT/embedding.png.

The code is split by concern: :mod:`.features` (features files and a run's features), :mod:`.baseline`
(the baseline trained for its encoder), :mod:`.downstream` (the logistic regression and the leakage), :mod:`.plots`
(the embedding plot) and :mod:`.cli` (``python -m python.postprocess``).
"""

from __future__ import annotations

from .baseline import add_data_flags, data_fields, data_settings, train_baseline
from .cli import QUICK_EPOCHS, gather, main, parser, summary_table
from .downstream import discrete_bias, evaluate
from .features import from_run, load_features
from .plots import EMBED_POINTS, embed, plot_embedding

__all__ = [
    "EMBED_POINTS", "QUICK_EPOCHS", "add_data_flags", "data_fields", "data_settings", "discrete_bias", "embed",
    "evaluate", "from_run", "gather", "load_features", "main", "parser", "plot_embedding", "summary_table",
    "train_baseline",
]
