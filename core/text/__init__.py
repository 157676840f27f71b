"""Sentences from results."""

from .verdict import verdict_sentence

__all__ = ["verdict_sentence"]
