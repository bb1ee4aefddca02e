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

# Inter-coder agreement and consensus (issue 5).
from mmhe.annotations.agreement import (
    AgreementReport,
    agreement,
    au_reliability,
    cohen_kappa,
    confusion_matrix,
    fleiss_category_kappa,
    fleiss_kappa,
    interval_iou,
    match_events,
    write_agreement,
)
from mmhe.annotations.consensus import build_consensus, cluster_events

__all__ += [
    "AgreementReport",
    "agreement",
    "au_reliability",
    "build_consensus",
    "cluster_events",
    "cohen_kappa",
    "confusion_matrix",
    "fleiss_category_kappa",
    "fleiss_kappa",
    "interval_iou",
    "match_events",
    "write_agreement",
]
