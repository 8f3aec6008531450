"""JSON for embedding in an HTML ``<script>`` element."""

from __future__ import annotations

import json
from typing import Any

from mxflow.util.files import json_ready

#: characters that must not appear raw inside ``<script>`` data, and their JSON escapes:
#: ``<`` / ``>`` (no ``</script>``, ``<!--`` or ``<script`` can end or change the element),
#: ``&`` (for pages parsed as XHTML), U+2028 / U+2029 (line terminators in older JavaScript)
_SCRIPT_ESCAPES = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


def script_json(obj: Any) -> str:
    """``obj`` as compact JSON that is safe inside ``<script type="application/json">``.

    Parameters
    ----------
    obj
        Any value :func:`mxflow.util.files.json_ready` accepts (NaN and ±inf become null).

    Returns
    -------
    str
        JSON text in which ``<``, ``>``, ``&``, U+2028 and U+2029 appear only as
        ``\\uXXXX`` escapes (inside strings, the only place they can occur), so the
        text parses back to the same value and cannot end the script element.
    """
    text = json.dumps(json_ready(obj), separators=(",", ":"), ensure_ascii=False)
    return text.translate(_SCRIPT_ESCAPES)
