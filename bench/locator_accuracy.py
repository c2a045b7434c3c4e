"""Locator accuracy: healing_app.locate against Similo on the bench/similo web apps.

    python bench/locator_accuracy.py [DIR ...]        # default: ../shared/bench/similo/{dev,eval}
    python bench/locator_accuracy.py --fit [DEV_DIR]  # refit locate.py's weights on dev

For each split: top-1 accuracy (strict: the expected element; lenient: it or its parent/child,
the criterion of the Similo paper), how often we answered and how precise the answers were
with abstention on, milliseconds per case, and the Similo re-implementation on the same cases.

--fit learns FEATURE_WEIGHTS (softmax over each case's candidates, L2-regularised) and then
CONFIDENCE_WEIGHTS (logistic regression on out-of-fold predictions, folds grouped by app) and
prints both as Python to paste into healing_app/locate.py. It refuses the eval split: eval is
for reporting only. No numpy here (the product does not need it), so the fit is plain Python
and takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from healing_app import locate as engine  # noqa: E402

DEFAULT_SPLITS = (REPO.parent / "shared/bench/similo/dev", REPO.parent / "shared/bench/similo/eval")


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    name: str
    split: str
    candidates: list[dict]
    cases: list[dict]  # {"target": {...}, "expected": index}


def load_split(directory: Path) -> list[App]:
    apps = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        split = data.get("split", directory.name)
        apps.append(App(data["app"], split, data["candidates"], data["cases"]))
    if not apps:
        raise SystemExit(f"no *.json apps in {directory}")
    return apps


def _without_last_step(xpath: str) -> str:
    cut = xpath.rfind("/")
    return xpath[:cut] if cut > 0 else xpath


def same_or_parent_child(xpath_a: str, xpath_b: str) -> bool:
    """The Similo paper's criterion (almostIdenticalXPaths): equal, or one step apart."""
    a, b = xpath_a.lower(), xpath_b.lower()
    if len(a) < len(b):
        b = _without_last_step(b)
    elif len(b) < len(a):
        a = _without_last_step(a)
    return a == b


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class SplitReport:
    name: str
    total: int = 0
    correct: int = 0
    correct_lenient: int = 0
    answered: int = 0
    answered_correct: int = 0
    similo_correct: int = 0
    similo_correct_lenient: int = 0
    # CPU seconds (process time, best of TIMING_REPEATS): wall-clock time on a shared machine
    # measures the neighbours too.
    seconds_shared_page: float = 0.0  # prepare_page once per app, then locate per case
    seconds_cold: float = 0.0  # every locate call normalises its own candidate list
    wall_seconds_shared_page: float = 0.0
    misses: list[str] = field(default_factory=list)

    def line(self, label: str, correct: int) -> str:
        return f"{label} {correct}/{self.total} ({100 * correct / self.total:.1f}%)"

    def render(self) -> str:
        abstained = self.total - self.answered
        wrong_confident = self.answered - self.answered_correct
        precision = 100 * self.answered_correct / self.answered if self.answered else 0.0
        return "\n".join(
            [
                f"== {self.name}: {self.total} cases",
                "  anchor  top-1  " + self.line("strict", self.correct)
                + "  " + self.line("lenient", self.correct_lenient),
                "  similo  top-1  " + self.line("strict", self.similo_correct)
                + "  " + self.line("lenient", self.similo_correct_lenient),
                f"  abstention on: answered {self.answered}/{self.total} "
                f"({100 * self.answered / self.total:.1f}%), abstained {abstained}, "
                f"wrong-but-confident {wrong_confident}, precision when answering {precision:.2f}%",
                f"  CPU time: {1000 * self.seconds_shared_page / self.total:.2f} ms/case, "
                f"{self.seconds_shared_page:.2f} s for the split (page prepared once per app; "
                f"wall {self.wall_seconds_shared_page:.2f} s); cold (each call prepares its page) "
                f"{1000 * self.seconds_cold / self.total:.2f} ms/case, {self.seconds_cold:.2f} s",
            ]
        )


# Timings are the best of a few runs, as timeit does: the other runs measured the neighbours.
TIMING_REPEATS = 3


def time_split(apps: Sequence[App], *, shared_page: bool) -> tuple[float, float]:
    """Best CPU and wall seconds to locate every case of the split."""
    best_cpu = best_wall = math.inf
    for _ in range(TIMING_REPEATS if shared_page else 1):
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        for app in apps:
            page = engine.prepare_page(app.candidates) if shared_page else app.candidates
            for case in app.cases:
                engine.locate(case["target"], page)
        best_cpu = min(best_cpu, time.process_time() - cpu_started)
        best_wall = min(best_wall, time.perf_counter() - wall_started)
    return best_cpu, best_wall


def evaluate(name: str, apps: Sequence[App], *, show_misses: bool = False) -> SplitReport:
    report = SplitReport(name)
    for app in apps:
        xpaths = [candidate.get("xpath", "") for candidate in app.candidates]
        page = engine.prepare_page(app.candidates)
        for number, case in enumerate(app.cases):
            result = engine.locate(case["target"], page)
            expected = case["expected"]
            best = result.ranked[0][0]
            report.total += 1
            report.correct += best == expected
            report.correct_lenient += same_or_parent_child(xpaths[best], xpaths[expected])
            if not result.abstained:
                report.answered += 1
                report.answered_correct += result.index == expected
            if best != expected and show_misses:
                report.misses.append(
                    f"  miss {app.name}#{number}: chose {best} (conf {result.confidence:.2f}, "
                    f"{'abstained' if result.abstained else 'ANSWERED'}), expected {expected}"
                )
            similo_best = engine.similo_rank(case["target"], app.candidates)[0][0]
            report.similo_correct += similo_best == expected
            report.similo_correct_lenient += same_or_parent_child(
                xpaths[similo_best], xpaths[expected]
            )
    report.seconds_shared_page, report.wall_seconds_shared_page = time_split(apps, shared_page=True)
    report.seconds_cold, _ = time_split(apps, shared_page=False)
    return report


# ---------------------------------------------------------------------------------------------
# Fitting (dev only)
# ---------------------------------------------------------------------------------------------

L2 = 0.01
EPOCHS = 250
LEARNING_RATE = 0.05
FOLDS = 5


@dataclass(frozen=True)
class TrainingCase:
    app: str
    rows: list[list[float]]  # features of the shortlisted candidates
    expected: int | None  # position of the expected element in rows; None if not shortlisted
    self_row: list[float]


def training_cases(apps: Sequence[App]) -> list[TrainingCase]:
    cases = []
    for app in apps:
        page = engine.prepare_page(app.candidates)
        for case in app.cases:
            indexes, rows, self_row = engine.feature_rows(case["target"], page)
            expected = indexes.index(case["expected"]) if case["expected"] in indexes else None
            cases.append(TrainingCase(app.name, rows, expected, self_row))
    return cases


def _dot(weights: Sequence[float], row: Sequence[float]) -> float:
    return sum(w * x for w, x in zip(weights, row) if x)


def fit_weights(cases: Sequence[TrainingCase]) -> list[float]:
    """Softmax (listwise) regression: make the expected element the likeliest in each case."""
    size = len(engine.ALL_FEATURE_NAMES)
    learnable = [case for case in cases if case.expected is not None]
    weights, first_moment, second_moment = [0.0] * size, [0.0] * size, [0.0] * size
    for step in range(1, EPOCHS + 1):
        gradient = [0.0] * size
        for case in learnable:
            scores = [_dot(weights, row) for row in case.rows]
            top = max(scores)
            exps = [math.exp(score - top) for score in scores]
            total = sum(exps)
            for row, exp in zip(case.rows, exps):
                probability = exp / total
                if probability > 1e-6:
                    for j, x in enumerate(row):
                        if x:
                            gradient[j] += probability * x
            for j, x in enumerate(case.rows[case.expected]):
                gradient[j] -= x
        for j in range(size):  # Adam
            g = gradient[j] / len(learnable) + L2 * weights[j]
            first_moment[j] = 0.9 * first_moment[j] + 0.1 * g
            second_moment[j] = 0.999 * second_moment[j] + 0.001 * g * g
            m = first_moment[j] / (1 - 0.9**step)
            v = second_moment[j] / (1 - 0.999**step)
            weights[j] -= LEARNING_RATE * m / (math.sqrt(v) + 1e-8)
    return weights


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, x))))


GENERAL_KEYS = ("margin", "evidence", "log_odds")
SAME_TEXT_AND_TAG_KEYS = ("margin",)


def fit_logistic(
    inputs: Sequence[dict[str, float]], labels: Sequence[bool], keys: Sequence[str] = GENERAL_KEYS
) -> dict[str, float]:
    """Plain logistic regression (gradient descent, small L2) for the confidence calibration."""
    weights = {"bias": 0.0, **{key: 0.0 for key in keys}}
    for _ in range(5000):
        gradient = {key: 0.0 for key in weights}
        for x, label in zip(inputs, labels):
            z = weights["bias"] + sum(weights[key] * x[key] for key in keys)
            error = _sigmoid(z) - label
            gradient["bias"] += error
            for key in keys:
                gradient[key] += error * x[key]
        for key in weights:
            penalty = 0.0 if key == "bias" else 0.001 * weights[key]
            weights[key] -= 0.5 * (gradient[key] / len(inputs) + penalty)
    return weights


@dataclass(frozen=True)
class FoldResult:
    inputs: dict[str, float]  # confidence inputs of the winner
    correct: bool
    displaced: bool  # locate abstains whatever the confidence (engine.displaced)
    kind: str  # engine.evidence_kind of the winner: which calibration applies
    fold: int


def out_of_fold(cases: Sequence[TrainingCase]) -> list[FoldResult]:
    """Every case scored by a model that never saw its app."""
    apps = sorted({case.app for case in cases})
    results = []
    for fold in range(FOLDS):
        held_out = set(apps[fold::FOLDS])
        weights = fit_weights([case for case in cases if case.app not in held_out])
        for case in cases:
            if case.app not in held_out:
                continue
            scores = [_dot(weights, row) for row in case.rows]
            order = sorted(range(len(scores)), key=lambda i: -scores[i])
            self_score = _dot(weights, case.self_row)
            inputs = engine.confidence_inputs([scores[i] for i in order], self_score)
            runner_up = case.rows[order[1]] if len(order) > 1 else None
            results.append(FoldResult(
                inputs,
                correct=case.expected is not None and order[0] == case.expected,
                displaced=engine.displaced(case.rows[order[0]], runner_up),
                kind=engine.evidence_kind(case.rows[order[0]], runner_up),
                fold=fold,
            ))
        print(f"  fold {fold + 1}/{FOLDS} done", file=sys.stderr)
    return results


def fit_calibrations(folds: Sequence[FoldResult]) -> tuple[dict[str, float], dict[str, float]]:
    """The general calibration (every case) and the one for "same text and tag" winners (those
    cases only, without the displaced ones: locate abstains on them whatever the confidence, and
    their wide margins would teach that a wide margin means little)."""
    general = fit_logistic([f.inputs for f in folds], [f.correct for f in folds])
    same = [f for f in folds if f.kind == engine.SAME_TEXT_AND_TAG and not f.displaced]
    same_text_and_tag = fit_logistic(
        [f.inputs for f in same], [f.correct for f in same], SAME_TEXT_AND_TAG_KEYS
    )
    return general, same_text_and_tag


def _confidence(f: FoldResult, general: dict[str, float], same: dict[str, float]) -> float:
    return engine.calibrated_confidence(f.inputs, f.kind, general=general, same_text_and_tag=same)


def fit(directory: Path) -> None:
    apps = load_split(directory)
    if directory.name == "eval" or any(app.split == "eval" for app in apps):
        raise SystemExit("refusing to fit on the eval split: tune on dev only")
    cases = training_cases(apps)
    shortlisted = sum(case.expected is not None for case in cases)
    print(f"fitting on {len(cases)} cases of {len(apps)} apps; the expected element is "
          f"shortlisted in {shortlisted}", file=sys.stderr)
    weights = fit_weights(cases)
    folds = out_of_fold(cases)
    calibration, same_calibration = fit_calibrations(folds)

    right = sum(f.correct for f in folds)
    print(f"# out-of-fold top-1 on dev: {right}/{len(folds)}")
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95, 0.98):
        answered = [
            f.correct for f in folds
            if not f.displaced and _confidence(f, calibration, same_calibration) >= threshold
        ]
        if answered:
            print(
                f"#   confidence >= {threshold}: answers {len(answered)}/{len(folds)}, "
                f"precision {100 * sum(answered) / len(answered):.1f}%"
            )
    # The lines above judge the calibration on the cases it was fitted on. Refitted without
    # each fold's apps, as the weights were, it is judged on apps it never saw:
    answered = []
    for fold in range(FOLDS):
        held_out = [f for f in folds if f.fold == fold]
        fold_calibrations = fit_calibrations([f for f in folds if f.fold != fold])
        answered += [
            f.correct for f in held_out
            if not f.displaced and _confidence(f, *fold_calibrations) >= engine.MIN_CONFIDENCE
        ]
    print(
        f"# calibration out-of-fold too, confidence >= {engine.MIN_CONFIDENCE}: answers "
        f"{len(answered)}/{len(folds)}, precision {100 * sum(answered) / max(len(answered), 1):.1f}%"
    )
    # A feature that never fires on dev (data_testid, say) cannot be fitted: keep its weight.
    silent = {
        name for j, name in enumerate(engine.ALL_FEATURE_NAMES)
        if not any(row[j] for case in cases for row in case.rows)
    }
    print("FEATURE_WEIGHTS: dict[str, float] = {")
    for name, weight in zip(engine.ALL_FEATURE_NAMES, weights):
        if name in silent:
            kept = engine.FEATURE_WEIGHTS.get(name, 0.0)
            print(f'    "{name}": {kept:.4f},  # no signal on dev: kept as set by hand')
        else:
            print(f'    "{name}": {weight:.4f},')
    print("}")
    print("CONFIDENCE_WEIGHTS: dict[str, float] = {")
    for key, weight in calibration.items():
        print(f'    "{key}": {weight:.4f},')
    print("}")
    print("SAME_TEXT_AND_TAG_CONFIDENCE_WEIGHTS: dict[str, float] = {")
    for key, weight in same_calibration.items():
        print(f'    "{key}": {weight:.4f},')
    print("}")


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", nargs="*", type=Path, help="split directories of *.json apps")
    parser.add_argument("--fit", action="store_true", help="refit the weights on a dev directory")
    parser.add_argument("--misses", action="store_true", help="list the cases we got wrong")
    args = parser.parse_args(argv)

    if args.fit:
        fit(args.dirs[0] if args.dirs else DEFAULT_SPLITS[0])
        return
    for directory in args.dirs or DEFAULT_SPLITS:
        report = evaluate(directory.name, load_split(directory), show_misses=args.misses)
        print(report.render())
        if report.misses:
            print("\n".join(report.misses))


if __name__ == "__main__":
    main()
