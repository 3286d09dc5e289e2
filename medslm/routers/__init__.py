"""Routing: calibrated confidence, the escalation policy and budget, LLM escalation, human review.

Light to import (no torch, no httpx at import time)::

    from medslm.routers import EscalationPolicy, Budget, Calibrator, ReviewQueue, Escalator, ece

    policy = EscalationPolicy(thresholds={"icd": 0.6, "triage": 0.7}, budget=Budget(max_escalations=100))
    route = policy.decide(result, note_id=note.id)   # Route.ACCEPT / ESCALATE / REVIEW
"""

from medslm.routers.calibration import CalibrationSet, Calibrator, ece, reliability, reliability_plot
from medslm.routers.confidence import SignalWeights, combine
from medslm.routers.escalation import Escalator, TeacherStore
from medslm.routers.policy import (
    Budget,
    EscalationPolicy,
    EscalationStats,
    choose_threshold,
    note_escalation_rate,
)
from medslm.routers.resume import request_review, request_reviews, resume_item, resume_resolved, resume_thread
from medslm.routers.review_queue import Decision, ItemStatus, ReviewItem, ReviewQueue
from medslm.routers.thresholds import AgentCalibration, Calibrations, OperatingCurve, ThresholdInForce

__all__ = [
    "AgentCalibration",
    "Budget",
    "CalibrationSet",
    "Calibrations",
    "Calibrator",
    "Decision",
    "EscalationPolicy",
    "EscalationStats",
    "Escalator",
    "ItemStatus",
    "OperatingCurve",
    "ReviewItem",
    "ReviewQueue",
    "SignalWeights",
    "TeacherStore",
    "ThresholdInForce",
    "choose_threshold",
    "combine",
    "ece",
    "note_escalation_rate",
    "reliability",
    "reliability_plot",
    "request_review",
    "request_reviews",
    "resume_item",
    "resume_resolved",
    "resume_thread",
]
