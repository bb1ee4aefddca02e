"""The coding (annotation) file: read, validate, write; pseudonyms; inter-coder agreement."""

from mmhe.annotations.coding_file import (
    CODING_COLUMNS,
    REQUIRED_COLUMNS,
    AnnotationIssue,
    CodingFile,
    MeRule,
    read_coding_file,
    to_coding_rows,
    write_coding_file,
    write_coding_sheet,
)
from mmhe.annotations.pseudonyms import PseudonymMap

__all__ = [
    "CODING_COLUMNS",
    "REQUIRED_COLUMNS",
    "AnnotationIssue",
    "CodingFile",
    "MeRule",
    "PseudonymMap",
    "read_coding_file",
    "to_coding_rows",
    "write_coding_file",
    "write_coding_sheet",
]

# Inter-coder agreement and consensus (issue 5): imported on first use, so reading a
# coding file (ingest, validate) does not pay for SciPy's optimiser.
_LAZY = {
    "AgreementReport": "agreement",
    "agreement": "agreement",
    "au_reliability": "agreement",
    "cohen_kappa": "agreement",
    "confusion_matrix": "agreement",
    "fleiss_category_kappa": "agreement",
    "fleiss_kappa": "agreement",
    "interval_iou": "agreement",
    "match_events": "agreement",
    "write_agreement": "agreement",
    "build_consensus": "consensus",
    "cluster_events": "consensus",
}
__all__ += sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"mmhe.annotations.{_LAZY[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmhe.annotations' has no attribute {name!r}")
