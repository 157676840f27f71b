"""Evaluation: verification metrics (and, later, faithfulness of explanations)."""

from .verification import VerificationMetrics, verification_metrics

__all__ = ["VerificationMetrics", "verification_metrics"]
