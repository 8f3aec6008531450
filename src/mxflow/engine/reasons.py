"""Why a DIALS program failed, in plain words, from the text of its log.

DIALS explains its failures for people who know its parameters: a failed profile
model ends with the names of the parameters to change
(``profile.gaussian_rs.min_spots.overall=50``), refinement names the parameters it
could not determine.  :func:`plain_reason` turns the failures that come from having too
few reflections (small wedges, small cells, weak crystals) into a sentence a user can
act on, with the numbers DIALS gave; for anything else it returns None and the caller
keeps DIALS's own error line.

Only the messages of DIALS 3.12 are known here; a message worded otherwise falls back to
DIALS's line, never to a wrong explanation.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NUM = r"(\d+(?:\.\d+)?)"

#: dials.integrate: "Too few reflections for profile modelling: need 20 per degree or 50
#: in total / got 13.3 per degree and 20 in total" (scan data)
_PROFILE_SCAN = re.compile(
    rf"Too few reflections for profile modelling:\s*need\s+{_NUM}\s+per degree or\s+{_NUM}"
    rf"\s+in total\s+got\s+{_NUM}\s+per degree and\s+{_NUM}\s+in total",
    re.S,
)
#: the same without a scan: "expected >= 50, got 20"
_PROFILE_STILL = re.compile(
    rf"Too few reflections for profile modelling:\s*expected >=\s*{_NUM},\s*got\s+{_NUM}", re.S
)
_PROFILE_NONE = re.compile(r"No reflections remaining for profile modelling")
#: dials.refine / dials.index: "Too few reflections to parameterise Crystal1g_param_0, ..."
_PARAMETERISE = re.compile(r"Too few reflections to parameterise ([^\n]+?)\.?\n")
#: dials.refine's reflection manager: "Remaining number of reflections = 8, for experiment 0,
#: which is below the configured limit for this reflection manager"
_REMAINING = re.compile(r"Remaining number of reflections = (\d+)[^\n]*below the configured limit")
_CENTROIDS = re.compile(r"Too few reflections to trim centroids")
#: dials.scale
_ALL_REJECTED = re.compile(r"All data sets have been rejected as bad")
_NONE_LEFT = re.compile(r"No reflections left after|no reflections (?:left|remaining)", re.I)


def _n(text: str) -> str:
    """A count as DIALS printed it, without a needless ``.0`` (``13.333`` → ``13.3``)."""
    value = float(text)
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


def _profile_scan(m: re.Match[str]) -> str:
    need_deg, need_all, got_deg, got_all = m.groups()
    return (
        f"too few strong spots to model spot profiles ({_n(got_all)} < {_n(need_all)}, "
        f"and {_n(got_deg)} < {_n(need_deg)} per degree)"
    )


def _profile_still(m: re.Match[str]) -> str:
    need, got = m.groups()
    return f"too few strong spots to model spot profiles ({_n(got)} < {_n(need)})"


def _parameterise(m: re.Match[str]) -> str:
    names = [n.strip() for n in m.group(1).split(",") if n.strip()]
    models = sorted(
        {k.lower() for k in re.findall(r"Beam|Crystal|Detector|Goniometer", m.group(1))}
    )
    what = " and ".join(models) if models else "the model"
    return f"too few reflections to refine the {what} ({len(names)} parameters)"


_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (_PROFILE_SCAN, _profile_scan),
    (_PROFILE_STILL, _profile_still),
    (_PROFILE_NONE, lambda m: "no strong spots left to model spot profiles"),
    (_PARAMETERISE, _parameterise),
    (
        _REMAINING,
        lambda m: f"too few reflections left for refinement ({m.group(1)})",
    ),
    (_CENTROIDS, lambda m: "too few reflections for refinement to use"),
    (_ALL_REJECTED, lambda m: "scaling rejected every reflection as bad"),
    (_NONE_LEFT, lambda m: "no reflections left to scale"),
]


def plain_reason(log_text: str) -> str | None:
    """The failure of a DIALS run for want of reflections, in plain words, or None.

    Parameters
    ----------
    log_text
        The program's output (stdout and stderr, as mxflow's step logs hold it).

    Returns
    -------
    str or None
        e.g. ``"too few strong spots to model spot profiles (38 < 50, and 12.7 < 20 per
        degree)"``; None when the log holds none of the known messages.
    """
    for pattern, words in _RULES:
        if m := pattern.search(log_text):
            return words(m)
    return None
