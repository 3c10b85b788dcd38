from pathlib import Path

from pydantic import Field

from services.routing.domain import POLICY_FILE
from services.routing.knowledge import PROFILES_DIR
from services.routing.router import DEFAULT_THRESHOLD
from shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    http_port: int = Field(default=8001, ge=1, le=65535)
    policy_file: Path = Field(
        default=POLICY_FILE, description="The jurisdiction override rules (TOML)."
    )
    policy_check_seconds: float = Field(
        default=5.0, gt=0, description="How often the policy file is checked for changes."
    )
    profiles_dir: Path = Field(
        default=PROFILES_DIR,
        description="The department profiles (one TOML file per department) the ranker is "
        "trained on.",
    )
    triage_threshold: float = Field(
        default=DEFAULT_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Below this confidence a ticket goes to park-service triage with its top "
        "three candidates.",
    )
    retrain_every_seconds: float = Field(
        default=0.0,
        ge=0.0,
        description="Retrain on this schedule when new corrections came; 0: only on request "
        "(`parkdesk routing retrain`).",
    )
    model_check_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often routing looks for a newer model another replica stored.",
    )
    retrain_tolerance: float = Field(
        default=0.0,
        ge=0.0,
        le=0.2,
        description="How much accuracy on the labelled tickets a retrained model may lose and "
        "still replace the one in force.",
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where models trained at start are kept by what they were trained on, so "
        "that a new store or replica reuses one instead of training the same model again; "
        "unset: no cache.",
    )
    consumer_workers: int = Field(
        default=3,
        ge=1,
        le=16,
        description="Consumers of the tickets topic in this process, each with its own "
        "partitions: routing waits on its store and the broker, not on the CPU.",
    )
