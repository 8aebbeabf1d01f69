"""Agreement metrics: how well raters (humans, or a judge and a human) agree.

Pure functions over plain Python data (lists, dicts, pandas Series); no MLflow, no UI.
The names are imported on first use (:mod:`core._lazy`): pandas and numpy load only then.

Conventions shared by every function:

- Labels are compared by equality, as given: bools (pass/fail, pass = ``True``),
  strings (categories) or numbers. Normalising ``"pass"``/``"yes"`` is the caller's job.
- ``None``/NaN means unlabeled; an item is skipped when either side has no label.
- An undefined metric (kappa when both raters used one and the same class) is ``None``.
- Empty input, mismatched lengths or no overlap raise ``core.errors.ValidationError``
  with a message saying what to do ("No traces labeled by both X and Y ...").
"""

from typing import TYPE_CHECKING

from core._lazy import lazy_exports

if TYPE_CHECKING:
    from core.agreement.bootstrap import ConfidenceInterval, bootstrap_ci
    from core.agreement.metrics import (
        BinaryRates,
        ClassMetrics,
        ConfusionMatrix,
        accuracy,
        aggregate_ratings,
        cohen_kappa,
        confusion_matrix,
        fleiss_kappa,
        per_class_metrics,
        tpr_tnr,
    )
    from core.agreement.report import (
        DEFAULT_TOLERANCE,
        MAX_NUMERIC_CLASSES,
        VALUE_TYPES,
        AgreementReport,
        ValueType,
        compare,
    )
    from core.agreement.reviewers import (
        ReviewerMatrix,
        ReviewerPair,
        disagreements,
        reviewer_matrix,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "core.agreement.bootstrap": ["ConfidenceInterval", "bootstrap_ci"],
        "core.agreement.metrics": [
            "BinaryRates",
            "ClassMetrics",
            "ConfusionMatrix",
            "accuracy",
            "aggregate_ratings",
            "cohen_kappa",
            "confusion_matrix",
            "fleiss_kappa",
            "per_class_metrics",
            "tpr_tnr",
        ],
        "core.agreement.report": [
            "DEFAULT_TOLERANCE",
            "MAX_NUMERIC_CLASSES",
            "VALUE_TYPES",
            "AgreementReport",
            "ValueType",
            "compare",
        ],
        "core.agreement.reviewers": [
            "ReviewerMatrix",
            "ReviewerPair",
            "disagreements",
            "reviewer_matrix",
        ],
    },
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_NUMERIC_CLASSES",
    "VALUE_TYPES",
    "AgreementReport",
    "BinaryRates",
    "ClassMetrics",
    "ConfidenceInterval",
    "ConfusionMatrix",
    "ReviewerMatrix",
    "ReviewerPair",
    "ValueType",
    "accuracy",
    "aggregate_ratings",
    "bootstrap_ci",
    "cohen_kappa",
    "compare",
    "confusion_matrix",
    "disagreements",
    "fleiss_kappa",
    "per_class_metrics",
    "reviewer_matrix",
    "tpr_tnr",
]
