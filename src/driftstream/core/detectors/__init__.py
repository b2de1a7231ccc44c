"""Online drift detectors with batch updates and explicit, JSON-able state."""

from driftstream.core.detectors.adwin import ADWIN
from driftstream.core.detectors.bank import update_adwins, update_page_hinkleys
from driftstream.core.detectors.cusum import CUSUM
from driftstream.core.detectors.cusum_bank import update_cusums
from driftstream.core.detectors.ddm import DDM
from driftstream.core.detectors.page_hinkley import PageHinkley

__all__ = [
    "ADWIN",
    "CUSUM",
    "DDM",
    "PageHinkley",
    "update_adwins",
    "update_cusums",
    "update_page_hinkleys",
]
