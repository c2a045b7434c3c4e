"""Element similarity: find the element of a changed page that a stored fingerprint describes.

Pure Python, no Django: the healing pipeline, the agents and the benchmark share this engine.

How `locate` decides:

1. Every element is normalised once (`_prepare`; `prepare_page` for a whole snapshot): words of
   its text with mojibake repaired, class tokens, an href without scheme and archive noise,
   xpath steps, neighbour words...
2. A coarse pass compares the text, xpath, id-relative xpath, classes, id and href of every
   candidate in C (rapidfuzz), and shortlists the `SHORTLIST_SIZE` most similar (`_shortlist`).
3. Each shortlisted (target, candidate) pair becomes a vector of similarities in 0..1
   (`_pair_features`): the properties Similo compares, compared in sturdier ways, and a few that
   Similo ignores (page region, identifier words that moved between id, name and text).
4. Features relative to the rest of the page are appended (`_add_page_relative_features`):
   "the only element with exactly this text", "about the most similar xpath on the page".
5. A linear model scores the shortlist. Its weights (`FEATURE_WEIGHTS`) were fitted on the dev
   split of bench/similo only, with `python bench/locator_accuracy.py --fit`.
6. A logistic model, fitted on dev out-of-fold predictions, turns the winner's margin, its
   softmax probability and the share of the target's own evidence it recovers into a
   calibrated `confidence`; a winner with exactly the target's text and tag gets its own
   calibration, on the margin alone (`evidence_kind`). Below `MIN_CONFIDENCE`, `locate`
   abstains and says why. It also abstains when the runner-up sits where the target was and
   the winner does not (`displaced`): look-alikes that traded places, where text and layout
   point at different elements.

`similo_rank` is a plain re-implementation of Similo (Nass et al., "Similarity-based web
element localization for robust test automation", TOSEM 2023), the benchmark's baseline.
"""

from __future__ import annotations

import heapq
import math
import operator
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from rapidfuzz import process
from rapidfuzz.distance import Indel, Levenshtein

__all__ = [
    "ALL_FEATURE_NAMES",
    "LocateResult",
    "calibrated_confidence",
    "confidence_inputs",
    "PreparedPage",
    "feature_rows",
    "displaced",
    "evidence_kind",
    "locate",
    "prepare_page",
    "similo_rank",
]

Fingerprint = Mapping[str, Any]


@dataclass(frozen=True)
class LocateResult:
    """The chosen candidate, or an abstention, and the evidence behind it."""

    index: int | None  # into the caller's candidate list; None when abstaining
    score: float  # model score of the best allowed candidate (0.0 when there is none)
    confidence: float  # calibrated probability that the best allowed candidate is the target
    margin: float  # score gap between the best allowed candidate and the runner-up (or 0.0,
    # the score of "not on this page", when that is higher)
    abstained: bool
    reason: str  # short, for reviewers: why this element, or why none
    ranked: tuple[tuple[int, float], ...]  # best allowed candidates as (index, score)


# ---------------------------------------------------------------------------------------------
# Fitted parameters and thresholds
# ---------------------------------------------------------------------------------------------

RANKED_LENGTH = 10

# Fitted on bench/similo/dev by `bench/locator_accuracy.py --fit` (never on eval).
FEATURE_WEIGHTS: dict[str, float] = {
    "tag_equal": 0.5530,
    "role_family_equal": 0.4735,
    "id_equal": 0.2118,
    # data-testid exists to stay stable, but the dev data has none to fit it on: set by hand,
    # above any fitted weight, so that a matching test id outweighs one or two changed texts.
    "test_id_equal": 3.0,
    "id_similar": 0.3540,
    "name_equal": 0.5740,
    "type_equal": -0.3365,
    "class_overlap": 0.7047,
    "class_similar": 0.2505,
    "href_equal": 0.2818,
    "href_similar": 0.1006,
    "text_equal": 0.7756,
    "text_similar": 0.8915,
    "text_token_overlap": 0.9778,
    "text_one_sided": -0.5899,
    "naming_overlap": 0.9549,
    "identifiers_cross": 0.9931,
    "xpath_steps_similar": 0.4473,
    "xpath_tail_shared": 0.4945,
    "landmarks_overlap": 0.5566,
    "region_equal": 1.6440,
    "region_conflict": -0.7014,
    "anchor_equal": 0.0984,
    "anchored_path_similar": 0.2106,
    "idxpath_similar": 0.2737,
    "location_near": 0.4540,
    "location_soft": 1.0748,
    "size_similar": 0.0864,
    "shape_similar": 0.5707,
    "is_button_equal": -0.2917,
    "neighbor_overlap": 0.0847,
    "neighbor_jaccard": 0.1269,
    "neighbor_sides_similar": 0.2097,
    "text_equal_unique": -0.2004,
    "text_similar_near_page_best": 1.1678,
    "xpath_steps_similar_near_page_best": 1.6696,
    "idxpath_similar_near_page_best": 0.8037,
    "class_similar_near_page_best": 0.4572,
    "neighbor_jaccard_near_page_best": 0.3567,
    "location_soft_near_page_best": 0.9281,
    "href_similar_near_page_best": 0.3805,
    "id_similar_near_page_best": 0.3913,
}

# confidence = sigmoid(bias + margin * m + evidence * e + log_odds * l); fitted on dev folds.
CONFIDENCE_WEIGHTS: dict[str, float] = {
    "bias": -1.9011,
    "margin": 0.3709,
    "evidence": 3.8016,
    "log_odds": 0.1964,
}

# The same, for winners whose text is exactly the target's and whose tag is the target's own,
# when the runner-up's are not ("same text and tag", see `evidence_kind`): fitted on those dev
# cases alone (out-of-fold, not displaced), on the margin only. On dev, 195 of the 197 such
# winners were right and the two wrong ones had small margins (nested look-alikes: a label and
# the span in it, both "Password"), so here the margin tells nearly everything. The general model
# above, fitted on every kind of evidence, cannot say so: its margin slope is shared with winners
# whose text changed, where a wide margin means much less, and it kept ~80 such right answers
# below MIN_CONFIDENCE.
SAME_TEXT_AND_TAG_CONFIDENCE_WEIGHTS: dict[str, float] = {
    "bias": -1.8662,
    "margin": 3.8273,
}

# A wrong repair costs more than a question to a reviewer, so ask unless fairly sure.
MIN_CONFIDENCE = 0.95

# Below this share of the target's own evidence the best candidate is a guess, however lonely.
MIN_EVIDENCE = 0.25

# Candidates closer than this in score are the same element as far as the fingerprint can tell.
MIN_MARGIN = 1e-6

# A runner-up this much nearer the target's old spot than the winner (in location_soft, 0..1)
# means look-alikes traded places, as plan cards do when a pricing page is reordered: the text
# points at one element and the layout at another. On dev, the winner was right in 5 of the 11
# cases where this happened, so it is a question for a reviewer, however wide the margin.
MAX_DISPLACEMENT = 0.4


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[^0-9a-z]+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_XPATH_STEP = re.compile(r"([a-z0-9_\-*]+)(?:\[(\d+)\])?(?:/|$)")
_LOCAL_NAME_STEP = re.compile(r"\*\[local-name\(\)\s*=\s*[\"']([^\"']+)[\"']\]")
_ID_ANCHOR = re.compile(r"""^(?://\*\[@id=['"]([^'"]*)['"]\]|id\(["']([^"']*)["']\))""")
_ARCHIVE_PREFIX = re.compile(r"/web/\d+[a-z_]*/(.+)$")
_MOJIBAKE_MARKERS = ("Ã", "â", "Â")

# Regions of a page; an element rarely moves between the header and the footer.
_REGION_TAGS = frozenset({"header", "nav", "main", "footer", "aside", "form", "dialog"})
# Tags that say what an element sits in; they survive most redesigns, unlike div nesting.
_LANDMARK_TAGS = _REGION_TAGS | {
    "section", "article", "table", "ul", "ol", "menu", "h1", "h2", "h3", "button", "label",
    "select", "li", "td",
}
# Tags (or ARIA roles) that do the same job for a user; redesigns swap one for another.
_ROLE_FAMILY = {
    "a": "clickable", "button": "clickable", "link": "clickable",
    "input": "field", "textarea": "field", "select": "field", "textbox": "field",
    "combobox": "field", "searchbox": "field",
    "span": "text", "div": "text", "p": "text", "label": "text", "li": "text", "td": "text",
    "th": "text", "tr": "text",
    "h1": "heading", "h2": "heading", "h3": "heading", "h4": "heading", "h5": "heading",
    "h6": "heading", "heading": "heading",
    "svg": "image", "img": "image", "image": "image",
}
_NEIGHBOR_SIDES = (
    "neighbor_text_above",
    "neighbor_text_below",
    "neighbor_text_left",
    "neighbor_text_right",
)
# Where the text a user reads comes from, in order of preference (Similo's, plus ARIA).
_TEXT_FIELDS = ("visible_text", "text", "value", "placeholder", "aria_label")
_NAMING_FIELDS = ("text", "visible_text", "value", "placeholder", "title", "alt", "aria_label")
_WORDED_FIELDS = frozenset((*_NAMING_FIELDS, "neighbor_text", *_NEIGHBOR_SIDES))
# Shorter words ("a", "btn", "nav") are shared by accident.
_MIN_IDENTIFIER_WORD = 4


def _repair_mojibake(text: str) -> str:
    """Undo UTF-8 read as Latin-1 ("EspaÃ±ol"), common in archived pages."""
    if not any(marker in text for marker in _MOJIBAKE_MARKERS):
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            return text.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
    return text


def _words(text: str) -> str:
    """Lower-case words joined by single spaces; punctuation and accents dropped."""
    if not text:
        return ""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", _repair_mojibake(text))
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", text.lower()).strip()


def _identifier_words(identifier: str) -> str:
    """`submitButton`, `submit-button` and `submit_button` all become "submit button"."""
    return _words(_CAMEL_BOUNDARY.sub(" ", identifier)) if identifier else ""


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _href_key(href: str) -> str:
    """An href without what changes for no reason: scheme, `www.`, trailing slash, fragment,
    and the prefix that web archives put in front of captured links."""
    if not href:
        return ""
    href = href.lower()
    archived = _ARCHIVE_PREFIX.search(href)
    if archived:
        href = archived.group(1)
    if href.startswith(("javascript:", "#", "mailto:", "tel:")):
        return href
    parts = urlsplit(href if "//" in href else "//" + href)
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.netloc.removeprefix('www.')}{path}{query}"


def _parse_xpath(xpath: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`/html[1]/body[1]/div[2]` -> steps ("html", "body", "div[2]") (a first child needs no
    index) and tags ("html", "body", "div")."""
    if "local-name" in xpath:  # `*[local-name() = "svg"][1]`, how xpath spells SVG elements
        xpath = _LOCAL_NAME_STEP.sub(r"\1", xpath)
    pairs = _XPATH_STEP.findall(xpath)
    steps = tuple(tag if position in ("", "1") else f"{tag}[{position}]" for tag, position in pairs)
    return steps, tuple(tag for tag, _ in pairs)


def _split_id_anchor(idxpath: str) -> tuple[str, str]:
    """`//*[@id='nav']/ul[1]/li[2]` -> ("nav", "/ul[1]/li[2]")."""
    match = _ID_ANCHOR.match(idxpath)
    if not match:
        return "", idxpath
    return match.group(1) or match.group(2) or "", idxpath[match.end():]


class _Element(NamedTuple):
    """One element's properties, normalised for comparison; "" or empty when unknown.

    A NamedTuple rather than a frozen dataclass: pages have thousands of elements, and a frozen
    dataclass is several times slower to build.
    """

    tag: str
    role_family: str
    element_id: str
    id_words: str
    test_id: str
    name: str
    element_type: str
    class_text: str
    classes: frozenset[str]
    href: str
    text: str  # what a user reads: visible_text, else text, value, placeholder, aria_label
    text_tokens: frozenset[str]
    naming_tokens: frozenset[str]  # every word that names it (text, value, title, alt, ...)
    identifier_words: frozenset[str]  # distinctive words of its id, name, test id and text
    identifier_blob: str  # id, name, test id, classes and text run together, for substring checks
    xpath_steps: tuple[str, ...]
    xpath_tags: tuple[str, ...]
    landmarks: frozenset[str]
    region: str  # outermost region (header, nav, main, footer, ...) it sits in
    idxpath: str
    anchor: str
    anchored_steps: tuple[str, ...]
    x: float | None
    y: float | None
    width: float | None
    height: float | None
    is_button: str
    neighbor_words: frozenset[str]
    neighbors_by_side: Mapping[str, str]
    usable: bool  # not known to be hidden or disabled


def _prepare(fp: Fingerprint) -> _Element:
    values = {key: str(value).strip() for key, value in fp.items() if value is not None}
    words = {key: _words(values[key]) for key in _WORDED_FIELDS if key in values}

    tag = values.get("tag", "").lower()
    element_id = values.get("id", "")
    name = values.get("name", "")
    class_text = values.get("class", "").lower()
    text = next((words[key] for key in _TEXT_FIELDS if words.get(key)), "")
    compact_text = text.replace(" ", "")
    id_words = _identifier_words(element_id)
    name_words = _identifier_words(name)
    test_id = values.get("data_testid", "")
    test_id_words = _identifier_words(test_id)

    xpath_steps, xpath_tags = _parse_xpath(values.get("xpath", "").lower())
    idxpath = values.get("idxpath", "").lower()
    anchor, anchored_path = _split_id_anchor(idxpath)

    neighbors_by_side = {side: words[side] for side in _NEIGHBOR_SIDES if words.get(side)}
    neighbor_words = set(words.get("neighbor_text", "").split())
    for side_words in neighbors_by_side.values():
        neighbor_words.update(side_words.split())

    return _Element(
        tag=tag,
        role_family=_ROLE_FAMILY.get(values.get("role", "").lower() or tag, tag),
        element_id=element_id.lower(),
        id_words=id_words,
        test_id=test_id,
        name=name.lower(),
        element_type=values.get("type", "").lower(),
        class_text=class_text,
        classes=frozenset(class_text.split()),
        href=_href_key(values.get("href", "")),
        text=text,
        text_tokens=frozenset(text.split()),
        naming_tokens=frozenset(
            word for key in _NAMING_FIELDS if key in words for word in words[key].split()
        ),
        identifier_words=frozenset(
            word
            for word in (*id_words.split(), *name_words.split(), *test_id_words.split(),
                         compact_text)
            if len(word) >= _MIN_IDENTIFIER_WORD
        ),
        identifier_blob=" ".join(
            (id_words.replace(" ", ""), name_words.replace(" ", ""),
             test_id_words.replace(" ", ""), _NON_WORD.sub("", class_text), compact_text)
        ),
        xpath_steps=xpath_steps,
        xpath_tags=xpath_tags,
        landmarks=frozenset(xpath_tags) & _LANDMARK_TAGS,
        region=next((step_tag for step_tag in xpath_tags if step_tag in _REGION_TAGS), ""),
        idxpath=idxpath,
        anchor=anchor,
        anchored_steps=_parse_xpath(anchored_path)[0],
        x=_number(fp.get("x")),
        y=_number(fp.get("y")),
        width=_number(fp.get("width")),
        height=_number(fp.get("height")),
        is_button=values.get("is_button", "").lower(),
        neighbor_words=frozenset(neighbor_words),
        neighbors_by_side=neighbors_by_side,
        usable=fp.get("visible") is not False and fp.get("enabled") is not False,
    )


# Properties that rapidfuzz compares with a whole page in one call (C speed), by the feature
# they feed. They pick the shortlist of candidates that get the full, slower comparison.
_COARSE_PROPERTIES = {
    "text_similar": "text",
    "xpath_steps_similar": "xpath_steps",
    "idxpath_similar": "idxpath",
    "class_similar": "class_text",
    "id_similar": "id_words",
    "href_similar": "href",
}


@dataclass(frozen=True)
class PreparedPage:
    """Candidates normalised once, for locating several fingerprints on one page snapshot."""

    elements: tuple[_Element, ...]
    # Coarse property -> every element's value, None where it has none (rapidfuzz skips those).
    columns: Mapping[str, list[Any]]

    def __len__(self) -> int:
        return len(self.elements)


def prepare_page(candidates: Sequence[Fingerprint]) -> PreparedPage:
    elements = tuple(_prepare(candidate) for candidate in candidates)
    columns = {
        prop: [getattr(element, prop) or None for element in elements]
        for prop in _COARSE_PROPERTIES.values()
    }
    return PreparedPage(elements, columns)


# ---------------------------------------------------------------------------------------------
# Pairwise features
# ---------------------------------------------------------------------------------------------


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def _similar(a: str | tuple[str, ...], b: str | tuple[str, ...]) -> float:
    """Indel similarity (1 - edits / total length) of two strings or step sequences."""
    if not a or not b:
        return 0.0
    return Indel.normalized_similarity(a, b)


def _common_suffix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    count = 0
    for left, right in zip(reversed(a), reversed(b)):
        if left != right:
            break
        count += 1
    return count


def _size_ratio(a: float, b: float) -> float:
    if a <= 0 or b <= 0:
        return 0.0
    return min(a, b) / max(a, b)


def _identifiers_cross(t: _Element, c: _Element) -> float:
    """1 when a distinctive word of one element's id, name or text occurs in the other's id,
    name, classes or text: redesigns move words between them (`#loginbutton` -> "Log in")."""
    if any(word in c.identifier_blob for word in t.identifier_words):
        return 1.0
    if any(word in t.identifier_blob for word in c.identifier_words):
        return 1.0
    return 0.0


def _side_similarity(t: _Element, c: _Element) -> float:
    """Neighbour text compared side by side (above with above, ...)."""
    if not t.neighbors_by_side or not c.neighbors_by_side:
        return 0.0
    theirs = c.neighbors_by_side
    total = sum(
        _similar(words, theirs.get(side, "")) for side, words in t.neighbors_by_side.items()
    )
    return total / len(t.neighbors_by_side)


FEATURE_NAMES: tuple[str, ...] = (
    "tag_equal",
    "role_family_equal",
    "id_equal",
    "test_id_equal",
    "id_similar",
    "name_equal",
    "type_equal",
    "class_overlap",
    "class_similar",
    "href_equal",
    "href_similar",
    "text_equal",
    "text_similar",
    "text_token_overlap",
    "text_one_sided",
    "naming_overlap",
    "identifiers_cross",
    "xpath_steps_similar",
    "xpath_tail_shared",
    "landmarks_overlap",
    "region_equal",
    "region_conflict",
    "anchor_equal",
    "anchored_path_similar",
    "idxpath_similar",
    "location_near",
    "location_soft",
    "size_similar",
    "shape_similar",
    "is_button_equal",
    "neighbor_overlap",
    "neighbor_jaccard",
    "neighbor_sides_similar",
)


def _pair_features(t: _Element, c: _Element) -> list[float]:
    """The candidate's similarities to the target in FEATURE_NAMES order; 0 when unknown.

    Called for every candidate of every call, so comparisons are written out inline.
    """
    similarity = Indel.normalized_similarity
    if t.text and c.text:
        text_equal = 1.0 if t.text == c.text else 0.0
        text_similar = text_equal or similarity(t.text, c.text)
        text_token_overlap = _jaccard(t.text_tokens, c.text_tokens)
        text_one_sided = 0.0
    else:
        text_equal = text_similar = text_token_overlap = 0.0
        # Text that appeared or vanished is evidence against: labels rarely come and go.
        text_one_sided = 1.0 if t.text or c.text else 0.0

    anchor_equal = anchored_path_similar = 0.0
    if t.anchor and t.anchor == c.anchor:
        anchor_equal = 1.0
        anchored_path_similar = (
            similarity(t.anchored_steps, c.anchored_steps)
            if t.anchored_steps or c.anchored_steps
            else 1.0
        )

    location_near = location_soft = size_similar = shape_similar = 0.0
    if t.x is not None and t.y is not None and c.x is not None and c.y is not None:
        distance = math.hypot(t.x - c.x, t.y - c.y)
        location_near = max(0.0, 1.0 - distance / 100.0)  # Similo's scale: the same spot
        location_soft = math.exp(-distance / 300.0)  # the same part of the screen
    if t.width and t.height and c.width and c.height:
        size_similar = _size_ratio(t.width * t.height, c.width * c.height)
        shape_similar = _size_ratio(t.width / t.height, c.width / c.height)

    neighbor_overlap = neighbor_jaccard = neighbor_sides_similar = 0.0
    if t.neighbor_words and c.neighbor_words:
        shared = len(t.neighbor_words & c.neighbor_words)
        if shared:
            neighbor_overlap = shared / min(len(t.neighbor_words), len(c.neighbor_words))
            neighbor_jaccard = shared / (len(t.neighbor_words) + len(c.neighbor_words) - shared)
        neighbor_sides_similar = _side_similarity(t, c)

    return [
        1.0 if t.tag and t.tag == c.tag else 0.0,
        1.0 if t.role_family and t.role_family == c.role_family else 0.0,
        1.0 if t.element_id and t.element_id == c.element_id else 0.0,
        1.0 if t.test_id and t.test_id == c.test_id else 0.0,
        similarity(t.id_words, c.id_words) if t.id_words and c.id_words else 0.0,
        1.0 if t.name and t.name == c.name else 0.0,
        1.0 if t.element_type and t.element_type == c.element_type else 0.0,
        _jaccard(t.classes, c.classes),
        similarity(t.class_text, c.class_text) if t.class_text and c.class_text else 0.0,
        1.0 if t.href and t.href == c.href else 0.0,
        similarity(t.href, c.href) if t.href and c.href else 0.0,
        text_equal,
        text_similar,
        text_token_overlap,
        text_one_sided,
        _jaccard(t.naming_tokens, c.naming_tokens),
        _identifiers_cross(t, c),
        similarity(t.xpath_steps, c.xpath_steps) if t.xpath_steps and c.xpath_steps else 0.0,
        min(_common_suffix(t.xpath_tags, c.xpath_tags), 4) / 4.0,
        _jaccard(t.landmarks, c.landmarks),
        1.0 if t.region and t.region == c.region else 0.0,
        1.0 if t.region and c.region and t.region != c.region else 0.0,
        anchor_equal,
        anchored_path_similar,
        similarity(t.idxpath, c.idxpath) if t.idxpath and c.idxpath else 0.0,
        location_near,
        location_soft,
        size_similar,
        shape_similar,
        1.0 if t.is_button and t.is_button == c.is_button else 0.0,
        neighbor_overlap,
        neighbor_jaccard,
        neighbor_sides_similar,
    ]


# Features whose page-wide best is telling: "about the most similar xpath on the page".
_NEAR_BEST = (
    "text_similar",
    "xpath_steps_similar",
    "idxpath_similar",
    "class_similar",
    "neighbor_jaccard",
    "location_soft",
    "href_similar",
    "id_similar",
)
_NEAR_BEST_COLUMNS = tuple(FEATURE_NAMES.index(name) for name in _NEAR_BEST)
# How far below the page's best a similarity may be and still count as about the best.
_NEAR_BEST_TOLERANCE = 0.2
_TEXT_EQUAL_COLUMN = FEATURE_NAMES.index("text_equal")
_LOCATION_COLUMN = FEATURE_NAMES.index("location_soft")

RELATIVE_FEATURE_NAMES: tuple[str, ...] = (
    "text_equal_unique",
    *(f"{name}_near_page_best" for name in _NEAR_BEST),
)
ALL_FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES + RELATIVE_FEATURE_NAMES


def _add_page_relative_features(
    rows: list[list[float]], page_bests: Mapping[int, float], text_matches: int
) -> None:
    """Append, in place, the features that compare each candidate with the others.

    `page_bests` has the page-wide best of the coarse columns; the other columns' best is taken
    over `rows` (the shortlist). `text_matches` counts the page's elements with the same text.
    """
    if not rows:
        return
    columns = list(zip(*rows))
    bests = [
        (column, page_bests.get(column, max(columns[column]))) for column in _NEAR_BEST_COLUMNS
    ]
    for row in rows:
        row.append(1.0 if text_matches == 1 and row[_TEXT_EQUAL_COLUMN] else 0.0)
        row.extend(_near_best(row[column], best) for column, best in bests)


def _near_best(value: float, best: float) -> float:
    """`value` if it is about the page's best, fading to 0 at `_NEAR_BEST_TOLERANCE` below it.

    Scaled by the value itself: being the best of a page of strangers is no evidence.
    """
    nearness = 1.0 - (best - value) / _NEAR_BEST_TOLERANCE
    return value * nearness if nearness > 0.0 else 0.0


def _self_row(t: _Element) -> list[float]:
    """The target compared with itself, as the best of a page: the most evidence it can give."""
    row = _pair_features(t, t)
    row.append(1.0 if row[_TEXT_EQUAL_COLUMN] else 0.0)
    row.extend(row[column] for column in _NEAR_BEST_COLUMNS)
    return row


# How many candidates get the full comparison. On dev, the full model's favourite was always
# among the 20 best by the coarse features, whatever the page size.
SHORTLIST_SIZE = 30

_COARSE_COLUMNS = {FEATURE_NAMES.index(name): prop for name, prop in _COARSE_PROPERTIES.items()}


def _shortlist(
    t: _Element, page: PreparedPage, allowed: Sequence[int]
) -> tuple[list[int], dict[int, float], int]:
    """The allowed candidates worth a full comparison, the page-wide best of each coarse column,
    and how many allowed candidates carry exactly the target's text.

    Coarse score: the unweighted sum of the coarse similarities and of their nearness to the
    page's best, so that the shortlist does not depend on the fitted weights.
    """
    is_allowed = [False] * len(page.elements)
    for index in allowed:
        is_allowed[index] = True
    coarse_scores = [0.0] * len(page.elements)
    page_bests: dict[int, float] = {}
    text_matches = 0
    for column, prop in _COARSE_COLUMNS.items():
        query = getattr(t, prop)
        if not query:
            continue
        # Best first, so the page's best is the first allowed match.
        matches = process.extract(
            query, page.columns[prop], scorer=Indel.normalized_similarity, limit=None
        )
        best = next((similarity for _, similarity, index in matches if is_allowed[index]), 0.0)
        page_bests[column] = best
        near_floor = best - _NEAR_BEST_TOLERANCE
        for _, similarity, index in matches:
            if not is_allowed[index]:
                continue
            coarse_scores[index] += similarity
            if similarity > near_floor:
                coarse_scores[index] += _near_best(similarity, best)
            if similarity == 1.0 and prop == "text":
                text_matches += 1
    shortlisted = heapq.nlargest(SHORTLIST_SIZE, allowed, key=coarse_scores.__getitem__)
    return shortlisted, page_bests, text_matches


def _as_page(candidates: Sequence[Fingerprint] | PreparedPage) -> PreparedPage:
    return candidates if isinstance(candidates, PreparedPage) else prepare_page(candidates)


def _shortlisted_features(
    t: _Element, page: PreparedPage, allowed: Sequence[int]
) -> tuple[list[int], list[list[float]]]:
    shortlisted, page_bests, text_matches = _shortlist(t, page, allowed)
    rows = [_pair_features(t, page.elements[i]) for i in shortlisted]
    _add_page_relative_features(rows, page_bests, text_matches)
    return shortlisted, rows


def feature_rows(
    target: Fingerprint, candidates: Sequence[Fingerprint] | PreparedPage
) -> tuple[list[int], list[list[float]], list[float]]:
    """The shortlisted candidates' indexes and features (ALL_FEATURE_NAMES order), and the
    target's own features as if it were on the page: what `bench/locator_accuracy.py --fit`
    fits the weights and the calibration on."""
    t = _prepare(target)
    page = _as_page(candidates)
    indexes, rows = _shortlisted_features(t, page, range(len(page)))
    return indexes, rows, _self_row(t)


# ---------------------------------------------------------------------------------------------
# Scoring, calibration and the decision
# ---------------------------------------------------------------------------------------------

_WEIGHT_VECTOR = tuple(FEATURE_WEIGHTS.get(name, 0.0) for name in ALL_FEATURE_NAMES)


def _score(row: Sequence[float]) -> float:
    return sum(map(operator.mul, _WEIGHT_VECTOR, row))


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


# The score of a candidate that shares nothing with the target: the score of "it is not here".
_ABSENT_SCORE = 0.0


def confidence_inputs(scores: Sequence[float], self_score: float) -> dict[str, float]:
    """What calibration looks at, for the best of `scores` (sorted best first).

    "The target is not on this page" competes as one more alternative, so that a lone or
    weak winner is not mistaken for a clear one.
    """
    top = scores[0]
    runner_up = max(scores[1] if len(scores) > 1 else _ABSENT_SCORE, _ABSENT_SCORE)
    # Softmax probability of the winner, as log-odds so that the logistic model stays linear.
    others = math.exp(_ABSENT_SCORE - top) + math.fsum(
        math.exp(score - top) for score in scores[1:]
    )
    log_odds = -math.log(others)
    evidence = top / self_score if self_score > 0 else 0.0
    return {
        "margin": top - runner_up,
        "evidence": max(0.0, min(evidence, 1.5)),
        "log_odds": max(-20.0, min(log_odds, 20.0)),
    }


def displaced(best_row: Sequence[float], runner_up_row: Sequence[float] | None) -> bool:
    """Whether the runner-up sits where the target was while the best candidate moved away."""
    if runner_up_row is None:
        return False
    gap = runner_up_row[_LOCATION_COLUMN] - best_row[_LOCATION_COLUMN]
    return gap >= MAX_DISPLACEMENT


_TAG_EQUAL_COLUMN = FEATURE_NAMES.index("tag_equal")

SAME_TEXT_AND_TAG = "same text and tag"
OTHER_EVIDENCE = "other"


def evidence_kind(best_row: Sequence[float], runner_up_row: Sequence[float] | None) -> str:
    """What kind of evidence the best candidate rests on, for picking its calibration.

    A winner that reads exactly what the target read, with the target's tag, is right far more
    often at the same margin than one whose text changed: the margin means different things.
    Not when the runner-up does so too: then only layout tells two identical-looking elements
    apart (the target gone, "Send" buttons in two other forms), and a margin won on layout
    means what it means for any other evidence.
    """
    def same_text_and_tag(row: Sequence[float] | None) -> bool:
        return row is not None and bool(row[_TEXT_EQUAL_COLUMN] and row[_TAG_EQUAL_COLUMN])

    if same_text_and_tag(best_row) and not same_text_and_tag(runner_up_row):
        return SAME_TEXT_AND_TAG
    return OTHER_EVIDENCE


def calibrated_confidence(
    inputs: Mapping[str, float],
    kind: str = OTHER_EVIDENCE,
    *,
    general: Mapping[str, float] = CONFIDENCE_WEIGHTS,
    same_text_and_tag: Mapping[str, float] = SAME_TEXT_AND_TAG_CONFIDENCE_WEIGHTS,
) -> float:
    """The probability that the winner is right, from its `confidence_inputs` and `evidence_kind`; the
    benchmark passes calibrations of its own while it fits them."""
    if kind == SAME_TEXT_AND_TAG:
        return _sigmoid(same_text_and_tag["bias"] + same_text_and_tag["margin"] * inputs["margin"])
    return _sigmoid(general["bias"] + math.fsum(general[key] * inputs[key] for key in inputs))


# What a reviewer calls each feature family (keyed by the feature name's first word).
_EVIDENCE_LABELS = {
    "text": "text", "naming": "text", "identifiers": "identifiers", "id": "id", "name": "name",
    "class": "class", "href": "link", "xpath": "xpath", "idxpath": "xpath", "anchor": "xpath",
    "anchored": "xpath", "landmarks": "page region", "region": "page region",
    "location": "position", "size": "size", "shape": "size", "neighbor": "neighbours",
    "tag": "tag", "role": "role", "type": "type", "is": "role", "test": "test id",
}


def _main_evidence(row: Sequence[float]) -> str:
    """The (up to three) kinds of property that contributed most to a score."""
    contributions: dict[str, float] = {}
    for name, weight, value in zip(ALL_FEATURE_NAMES, _WEIGHT_VECTOR, row):
        label = _EVIDENCE_LABELS.get(name.partition("_")[0], name)
        contributions[label] = contributions.get(label, 0.0) + weight * value
    strongest = sorted(
        (label for label, value in contributions.items() if value > 0),
        key=contributions.__getitem__,
        reverse=True,
    )
    return ", ".join(strongest[:3]) or "nothing in particular"


def locate(
    target: Fingerprint,
    candidates: Sequence[Fingerprint] | PreparedPage,
    *,
    excluded: Collection[int] = frozenset(),
    abstain: bool = True,
) -> LocateResult:
    """Find the candidate that is `target` on a changed page.

    Candidates that are hidden, disabled or in `excluded` (rejected by a reviewer before) are
    never chosen. With `abstain`, returns index None rather than a doubtful guess.
    """
    t = _prepare(target)
    page = _as_page(candidates)
    excluded = frozenset(excluded)
    allowed = [i for i, c in enumerate(page.elements) if c.usable and i not in excluded]
    if not allowed:
        return LocateResult(None, 0.0, 0.0, 0.0, True, "no usable candidate", ())

    indexes, rows = _shortlisted_features(t, page, allowed)
    scored = sorted(
        ((_score(row), i, row) for i, row in zip(indexes, rows)), key=lambda item: -item[0]
    )
    scores = [score for score, _, _ in scored]
    best_score, best_index, best_row = scored[0]
    inputs = confidence_inputs(scores, _score(_self_row(t)))
    runner_up_row = scored[1][2] if len(scored) > 1 else None
    confidence, doubt = _judge(
        scores, inputs, displaced(best_row, runner_up_row), evidence_kind(best_row, runner_up_row)
    )
    ranked = tuple((i, round(score, 4)) for score, i, _ in scored[:RANKED_LENGTH])

    if doubt and abstain:
        return LocateResult(None, best_score, confidence, inputs["margin"], True, doubt, ranked)
    reason = f"matched on {_main_evidence(best_row)}"
    if doubt:
        reason = f"{reason} (doubtful: {doubt})"
    return LocateResult(best_index, best_score, confidence, inputs["margin"], False, reason, ranked)


def _judge(
    scores: Sequence[float],
    inputs: Mapping[str, float],
    runner_up_in_place: bool,
    kind: str = OTHER_EVIDENCE,
) -> tuple[float, str]:
    """The calibrated confidence in the best of `scores` and, when it is not enough to act on,
    the reason a reviewer should look first."""
    confidence = calibrated_confidence(inputs, kind)
    if len(scores) > 1 and scores[0] - scores[1] <= MIN_MARGIN:
        # Look-alikes the fingerprint cannot tell apart: a coin toss at best.
        return min(confidence, 0.5), "two candidates too close"
    if runner_up_in_place:
        return min(confidence, 0.5), "another candidate now sits where the target was"
    if inputs["evidence"] < MIN_EVIDENCE:
        return confidence, "evidence too weak"
    if confidence < MIN_CONFIDENCE:
        # A runner-up within one point (about one strong property) is the likelier culprit.
        too_close = inputs["margin"] < 1.0
        return confidence, "two candidates too close" if too_close else "evidence too weak"
    return confidence, ""


# ---------------------------------------------------------------------------------------------
# Similo baseline
# ---------------------------------------------------------------------------------------------

# Similo's published properties, weights and comparisons (Similo2, WidgetLocator.java).
_SIMILO_WEIGHTS = {
    "tag": 1.5, "class": 0.5, "name": 1.5, "id": 1.5, "href": 0.5, "alt": 0.5, "xpath": 0.5,
    "idxpath": 0.5, "is_button": 0.5, "location": 0.5, "area": 0.5, "shape": 0.5,
    "visible_text": 1.5, "neighbor_text": 1.5,
}
_SIMILO_EXACT = frozenset({"tag", "name", "id", "is_button"})
_SIMILO_NUMERIC = frozenset({"area", "shape"})


def _similo_properties(fp: Fingerprint) -> dict[str, str]:
    """Lower-cased, non-empty properties, with visible_text and neighbor_text filled in the way
    Similo derives them when a snapshot only has their parts."""
    props = {key: str(value).strip().lower() for key, value in fp.items() if value is not None}
    props = {key: value for key, value in props.items() if value}
    if "visible_text" not in props:
        for key in ("text", "value", "placeholder"):
            if key in props:
                props["visible_text"] = props[key]
                break
    if "neighbor_text" not in props:
        sides = [props[side] for side in _NEIGHBOR_SIDES if side in props]
        if sides:
            props["neighbor_text"] = " ".join(sides)
    return props


def _alphanumeric(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def _similo_string(a: str, b: str) -> float:
    if a == b:
        return 1.0
    longest = max(len(a), len(b))
    # As published: the distance is taken on alphanumerics, the length on the raw strings.
    distance = Levenshtein.distance(_alphanumeric(a), _alphanumeric(b))
    return ((longest - distance) * 100 // longest) / 100


def _similo_integer(a: str, b: str) -> float:
    try:
        left, right = int(float(a)), int(float(b))
    except ValueError:
        return 0.0
    largest = max(left, right)
    if largest <= 0:
        return 0.0
    return ((largest - abs(left - right)) * 100 // largest) / 100


def _similo_word_in(word: str, words: Sequence[str]) -> bool:
    for other in words:
        if word == other:
            return True
        shorter, longer = (word, other) if len(word) < len(other) else (other, word)
        if len(shorter) < len(longer) and (longer.startswith(shorter) or longer.endswith(shorter)):
            return True
    return False


def _similo_neighbors(a: str, b: str) -> float:
    words_a, words_b = a.split(), b.split()
    letters = max(len(a) - len(words_a) + 1, len(b) - len(words_b) + 1)
    found = sum(len(word) for word in words_a if _similo_word_in(word, words_b))
    return min(found * 100 // letters, 100) / 100


def _similo_location(a: Mapping[str, str], b: Mapping[str, str]) -> float:
    try:
        dx = int(float(a["x"])) - int(float(b["x"]))
        dy = int(float(a["y"])) - int(float(b["y"]))
    except (KeyError, ValueError):
        return 0.0
    return max(100 - int(math.sqrt(dx * dx + dy * dy)), 0) / 100


def _similo_score(t: Mapping[str, str], c: Mapping[str, str]) -> float:
    score = 0.0
    for key, weight in _SIMILO_WEIGHTS.items():
        if key == "location":
            score += weight * _similo_location(t, c)
            continue
        a, b = t.get(key), c.get(key)
        if a is None or b is None:
            continue
        if key in _SIMILO_EXACT:
            similarity = 1.0 if a == b else 0.0
        elif key in _SIMILO_NUMERIC:
            similarity = _similo_integer(a, b)
        elif key == "neighbor_text":
            similarity = _similo_neighbors(a, b)
        else:
            similarity = _similo_string(a, b)
        score += weight * similarity
    return score


def similo_rank(target: Fingerprint, candidates: Sequence[Fingerprint]) -> list[tuple[int, float]]:
    """Every candidate as (index, Similo score), best first (ties keep candidate order)."""
    t = _similo_properties(target)
    scores = [(i, _similo_score(t, _similo_properties(c))) for i, c in enumerate(candidates)]
    return sorted(scores, key=lambda item: -item[1])
