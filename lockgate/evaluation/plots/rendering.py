"""How every plot is drawn: a 640 x 480 PNG on matplotlib's Agg canvas, and the shared colours.

:func:`render` draws on a fresh ``Figure`` attached to ``FigureCanvasAgg`` directly (no pyplot, no
backend switch, no global figure registry, so nothing leaks into the caller's matplotlib state),
under matplotlib's default style, and writes a PNG without software or date metadata, so the bytes
are the same for the same input and matplotlib version. matplotlib is imported inside, so
importing this module stays cheap.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BETTER", "NEUTRAL", "WORSE", "render"]

_FIGSIZE = (6.4, 4.8)
_DPI = 100
BETTER = "#2e7d32"
"""The colour of a challenger that does better (green)."""
WORSE = "#c62828"
"""The colour of a challenger that does worse, and of the current data in a drift plot (red)."""
NEUTRAL = "#757575"
"""The colour of reference lines, the reference data and undefined values (grey)."""


def render(draw: Callable[[Figure], None]) -> bytes:
    """Draws on a fresh 640 x 480 figure under the default style and returns the PNG bytes."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):
        fig = Figure(figsize=_FIGSIZE, dpi=_DPI)
        FigureCanvasAgg(fig)
        try:
            draw(fig)
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
        finally:
            fig.clear()
    return buffer.getvalue()
