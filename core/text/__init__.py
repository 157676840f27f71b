"""Sentences from results, and the explainability table of a map over facial regions."""

from .regions import RegionRow, region_sentences, region_table, table_markdown
from .verdict import confidence_words, verdict_sentence

__all__ = ["RegionRow", "confidence_words", "region_sentences", "region_table", "table_markdown", "verdict_sentence"]
