"""The runner: executes task code in a sandboxed child with an instrumented Playwright page.

Pure of Django. The job layer calls `execute(spec, ...)` and stores the RunResult.
"""

from .browser import BrowserPool
from .protocol import FAILURE_TYPES, SCRIPT_ERROR, Failure, RunResult, RunSpec, Step
from .sandbox import HANDOVER_BUDGET_S, Handover, HandoverError, RunnerError, execute

__all__ = [
    "FAILURE_TYPES",
    "HANDOVER_BUDGET_S",
    "SCRIPT_ERROR",
    "BrowserPool",
    "Failure",
    "Handover",
    "HandoverError",
    "RunResult",
    "RunSpec",
    "RunnerError",
    "Step",
    "execute",
]
