"""Hand-offs to other tools: BIDS (mne-bids + physio) and MEGC-style sample sheets."""

from mmhe.export.bids import BIDSExport, export_bids
from mmhe.export.megc import MEGCExport, export_megc

__all__ = ["BIDSExport", "MEGCExport", "export_bids", "export_megc"]
