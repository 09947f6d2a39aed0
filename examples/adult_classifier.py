"""csad.CSADClassifier on UCI Adult, beside the CLI's CSAD: ``python examples/adult_classifier.py --split S``
(installed; from the repository root without installing: ``PYTHONPATH=. python examples/adult_classifier.py``).

Loads split S of the shipped Adult copy as ``python -m python.train --dataset adult --split S`` does, fits
``CSADClassifier(standardize=False, random_state=S)`` (the loader has already standardised the features; the other
settings are the classifier's defaults, which are the CLI's Adult settings: λ = 10, K = 10, 5/1/1/5 epochs, batch
128, class-balanced minibatches) on the train split with sensitive feature gender, and prints the test metrics the
CLI writes to metrics.json: AUC and accuracy, the Adult fairness metrics (python.adult_metrics) and the bias leakage
of the target features (python.metrics.bias_leakage), as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch

try:  # the installed package
    from csad import CSADClassifier
    from csad.adult_metrics import adult_metrics
    from csad.data.adult import load_adult
    from csad.metrics import bias_leakage, target_metrics
except ImportError:  # from the repository root
    from python import CSADClassifier
    from python.adult_metrics import adult_metrics
    from python.data.adult import load_adult
    from python.metrics import bias_leakage, target_metrics


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", type=int, default=0, help="Adult's random split (0-9), also the random_state")
    args = p.parse_args(argv)
    bundle = load_adult(None, split=args.split, bias="gender")
    train, test = bundle.splits["train"], bundle.splits["test"]
    start = time.perf_counter()
    clf = CSADClassifier(standardize=False, random_state=args.split)
    clf.fit(train.inputs[0].numpy(), train.y.numpy(), sensitive_features=train.bias[:, 0].numpy())
    x_test = test.inputs[0].numpy()
    logits = torch.as_tensor(clf.decision_function(x_test)).float()
    metrics = target_metrics(logits, test.y)
    metrics.update(adult_metrics(lambda x: torch.as_tensor(clf.predict(x.numpy())), test.inputs[0], test.y))
    leak = bias_leakage(torch.as_tensor(clf.target_features(x_test)), test.bias[:, 0], seed=args.split)
    result = {"split": args.split, "test": metrics, "leakage_target_features": leak["balanced_accuracy"],
              "wall_time_s": time.perf_counter() - start}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
