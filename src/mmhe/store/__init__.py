"""The analysis-ready store: discovery, ingest, validation and reading."""

from mmhe.store.config import IngestConfig
from mmhe.store.ingest import ingest
from mmhe.store.layout import Layout, discover
from mmhe.store.reader import MMHEStore
from mmhe.store.validate import validate, validate_raw, validate_store, write_report

__all__ = [
    "IngestConfig",
    "Layout",
    "MMHEStore",
    "discover",
    "ingest",
    "validate",
    "validate_raw",
    "validate_store",
    "write_report",
]
