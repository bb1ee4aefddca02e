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
