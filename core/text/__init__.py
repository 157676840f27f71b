"""Sentences from results."""

from .verdict import confidence_words, verdict_sentence

__all__ = ["confidence_words", "verdict_sentence"]
