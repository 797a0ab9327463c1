"""Inline SVG pictures for ``zoo report``: RDKit molecule drawings and matplotlib figures.

Every function returns a bare ``<svg …>…</svg>`` element (no XML declaration or doctype) that
can be pasted into an HTML page as is: text is drawn as paths, nothing refers to an external
file, font or URL.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from zoo.featurize import clean_smiles

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

# Training-history keys drawn first (in this order), with their axis labels; other numeric keys follow.
CURVE_LABELS = {
    "heldout_mrr": "held-out MRR (text→molecule)",
    "heldout_hits@1": "held-out Hits@1",
    "loss": "training loss",
    "retrieval_loss": "retrieval loss",
    "adversarial": "adversarial loss",
    "disc_acc": "discriminator accuracy",
}
NOT_CURVES = {"epoch", "seconds", "lr"}


def _bare_svg(svg: str, css_class: str, label: str) -> str:
    """``svg`` from its ``<svg`` tag on, with a CSS class and an accessible label added."""
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("not an SVG document")
    attrs = f'<svg class="{css_class}" role="img" aria-label="{html.escape(label)}"'
    return attrs + svg[start + len("<svg"):].rstrip() + "\n"


def molecule_svg(smiles: str, width: int = 200, height: int = 155) -> str:
    """An RDKit 2D depiction of ``smiles``; a framed note when RDKit cannot parse it."""
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D

    mol = Chem.MolFromSmiles(clean_smiles(smiles))  # ChEBI-20's doubled stereo backslashes
    if mol is None:
        note = html.escape("RDKit cannot parse this SMILES")
        return (f'<svg class="mol unparsable" role="img" aria-label="{note}" xmlns="http://www.w3.org/2000/svg" '
                f'width="{width}px" height="{height}px" viewBox="0 0 {width} {height}">'
                f'<rect width="{width}" height="{height}" fill="#fff" stroke="#c00"/>'
                f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="12">{note}</text></svg>\n')
    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    drawer.drawOptions().clearBackground = False
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    return _bare_svg(drawer.GetDrawingText(), "mol", smiles)


def figure_svg(fig: "Figure", label: str) -> str:
    """A matplotlib figure as inline SVG (text as paths, no metadata block)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "molzoo-report"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata=dict.fromkeys(("Creator", "Date", "Format", "Type")))
    return _bare_svg(buffer.getvalue(), "plot", label)


def _axes(width: float, height: float):
    """A figure and its axes, made without pyplot (no global backend or figure registry is touched)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def curve_metrics(histories: Mapping[str, Sequence[Mapping[str, object]]]) -> list[str]:
    """History keys worth a figure: the known ones in :data:`CURVE_LABELS` order, then any other numeric key."""
    seen: list[str] = []
    for history in histories.values():
        for record in history:
            for key, value in record.items():
                if key not in NOT_CURVES and isinstance(value, (int, float)) and key not in seen:
                    seen.append(key)
    known = [k for k in CURVE_LABELS if k in seen]
    return known + sorted(k for k in seen if k not in CURVE_LABELS)


def training_curves(histories: Mapping[str, Sequence[Mapping[str, object]]]) -> list[tuple[str, str]]:
    """One ``(metric, svg)`` figure per metric in the histories, one line per run (runs keep their colour)."""
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    epochs = [r["epoch"] for h in histories.values() for r in h if isinstance(r.get("epoch"), (int, float))]
    figures = []
    for metric in curve_metrics(histories):
        fig, ax = _axes(4.2, 2.8)
        for i, (run, history) in enumerate(histories.items()):
            points = [(r["epoch"], r[metric]) for r in history if isinstance(r.get(metric), (int, float))]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, color=colours[i % len(colours)], label=run)
        title = CURVE_LABELS.get(metric, metric)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.grid(alpha=0.3)
        if len(histories) > 1:
            ax.legend(fontsize=7)
        figures.append((metric, figure_svg(fig, f"{title} per epoch")))
    return figures


def score_histogram(true_scores: "np.ndarray", best_other: "np.ndarray", title: str) -> str:
    """Histogram of each query's true-match score against its best non-matching candidate's score."""
    import numpy as np

    fig, ax = _axes(4.6, 2.9)
    low = float(min(true_scores.min(), best_other.min()))
    high = float(max(true_scores.max(), best_other.max()))
    n_bins = int(np.clip(len(true_scores) // 10, 10, 60))
    bins = np.linspace(low, high if high > low else low + 1e-3, n_bins + 1)
    for values, colour, label in ((best_other, "#d62728", "best non-matching molecule"), (true_scores, "#2ca02c", "true molecule")):
        ax.hist(values, bins=bins, histtype="stepfilled", alpha=0.3, color=colour)
        ax.hist(values, bins=bins, histtype="step", linewidth=1.5, color=colour, label=label)
    ax.set_xlabel("cosine similarity to the description")
    ax.set_ylabel("test descriptions")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return figure_svg(fig, f"score distribution: {title}")
