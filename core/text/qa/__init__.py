"""Questions about one computed result, answered only from its facts ("From Pixels to Words:
Leveraging Explainability in Face Recognition through Interactive Natural Language
Processing", arXiv 2409.16089): a BERT question-answering model reads a textual context
made of the similarity, the confidence and the explainability table by facial region, picks
the sub-context most similar to the question, extracts the answer span from it and says it
does not know when its score falls below a threshold.

Modules, one job each:

* ``fact``: the ``Fact`` and ``Facts`` (a list with the ``result_id`` of its comparison),
  the context the extractive model reads, ``unsupported_numbers``;
* ``facts`` / ``region_facts``: facts from a ``PairResult`` or ``CXRResult`` and from the
  maps' region tables; ``vocabulary``: the words for parts of the face and measures;
* ``retrieval``: all-MiniLM-L6-v2 sentence embeddings, or TF-IDF word overlap;
* ``intents`` / ``region_answers``: the templates, region answers among them;
* ``builtin``: templates gated and backed by retrieval; ``extractive``: the BERT span model;
* ``chat``: ``Chat`` ties them; ``suggestions``: questions a result can answer.

Answers never invent numbers: every number in an answer occurs in a fact sentence, and
``unsupported_numbers`` checks it. ``Answer.match`` is how well an answer fits the
question, not the face model's confidence (that is the C-Score, itself a fact).

Deviations from the paper
-------------------------
* The paper's context is one text of the scores and the table; here it is a list of
  sentences, so the answer can be given as the whole fact sentence that holds the extracted
  span (``Answer.text``), with the span itself in ``Answer.span``.
* The off-topic gate (templates + MiniLM retrieval) runs before the BERT model: a SQuAD 1
  model always returns some span, so its score alone cannot say "I don't know" to a question
  about the weather. A question naming a part of the face, or asking for a full table, is
  answered by the templates from exactly those facts, not by the BERT model.
* No question-answering weights ship with the project (the offline machine has none), so
  ``QA_THRESHOLD`` could not be tuned on the real model; it is a conventional value. The
  paper gives neither its threshold nor how it cuts the sub-context; the top
  ``CONTEXT_FACTS`` sentences by similarity are this package's choice.
* The built-in answerer is not in the paper: it is what answers without those weights.
  Without MiniLM its templates cannot be checked against the facts, so a question with a
  template word ("Are you sure it will rain?") gets that template's facts.
"""

from .answers import MAX_SENTENCES, TEMPLATE_MATCH, Answer, unknown_answer
from .builtin import OVERLAP_THRESHOLD, SHORT_QUESTION, TEMPLATE_FLOOR, UNKNOWN_THRESHOLD, BuiltinAnswerer
from .chat import Chat, answer
from .extractive import CONTEXT_FACTS, DEFAULT_QA_MODEL, QA_THRESHOLD, ExtractiveQA
from .fact import TOPICS, Fact, Facts, context, unsupported_numbers
from .facts import facts_from_cxr, facts_from_result, result_id
from .intents import INTENTS
from .retrieval import SentenceEmbedder, overlap_scores, sentence_embedder
from .suggestions import suggestions
from .vocabulary import PARTS, Part, parts_in

#: The former name of ``TEMPLATE_MATCH``.
TEMPLATE_SCORE = TEMPLATE_MATCH

__all__ = ["CONTEXT_FACTS", "DEFAULT_QA_MODEL", "INTENTS", "MAX_SENTENCES", "OVERLAP_THRESHOLD", "PARTS", "QA_THRESHOLD", "SHORT_QUESTION",
           "TEMPLATE_FLOOR", "TEMPLATE_MATCH", "TEMPLATE_SCORE", "TOPICS", "UNKNOWN_THRESHOLD", "Answer", "BuiltinAnswerer", "Chat",
           "ExtractiveQA", "Fact", "Facts", "Part", "SentenceEmbedder", "answer", "context", "facts_from_cxr", "facts_from_result",
           "overlap_scores", "parts_in", "result_id", "sentence_embedder", "suggestions", "unknown_answer", "unsupported_numbers"]  # fmt: skip
