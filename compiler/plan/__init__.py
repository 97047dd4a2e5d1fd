"""The plan: its schema, the loader that checks a plan.yaml field by field, and `prepare`, which
loads the plan's teacher and data and checks that they fit together."""

from cofc.compiler.plan.loader import (
    CalibrationPlan,
    DatasetPlan,
    DevicePlan,
    ExportPlan,
    ObjectivePlan,
    Plan,
    RuntimePlan,
    TeacherPlan,
    check_against_teacher,
    load_plan,
    plan_yaml,
)

__all__ = [
    "CalibrationPlan",
    "DatasetPlan",
    "DevicePlan",
    "ExportPlan",
    "ObjectivePlan",
    "Plan",
    "RuntimePlan",
    "TeacherPlan",
    "check_against_teacher",
    "load_plan",
    "plan_yaml",
]
