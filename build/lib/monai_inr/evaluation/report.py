"""The one report writer of every evaluation: ``metrics.json`` + CSV (:func:`write_metrics`), paper tables as CSV and
Markdown (:func:`write_table`, :func:`markdown_table`), and figures (:func:`save_figure`, :func:`write_montage`: images
with their error maps). Every file is written atomically through :mod:`monai_inr.io`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from monai_inr.io import write_atomic, write_text_atomic
from monai_inr.metrics.protocol import summarize, write_metrics

from .tables import Column, TableSpec

__all__ = [
    "write_metrics",
    "write_text_atomic",
    "format_cell",
    "select_rows",
    "markdown_table",
    "format_results_table",
    "write_table",
    "write_report",
    "save_figure",
    "write_montage",
]


def format_cell(row: Mapping[str, Any], key: str, decimals: int) -> str:
    """``mean ± sd`` of ``key`` in a summary row (SD only from two values on, ``(n=k)`` when values are missing),
    ``n/a`` without any finite value."""
    n, mean, sd = row.get(f"{key}_n", 0), row.get(f"{key}_mean"), row.get(f"{key}_sd")
    if not n or mean is None or not np.isfinite(mean):
        return "n/a"
    s = f"{mean:.{decimals}f}"
    if n >= 2 and sd is not None and np.isfinite(sd):
        s += f" ± {sd:.{decimals}f}"
    if n != row.get("n"):
        s += f" (n={n})"
    return s


def select_rows(records: Sequence[Mapping[str, Any]], spec: TableSpec) -> dict[str, Any]:
    """The records of a table (last group key among ``spec.rows``), its present rows and the rows not evaluated."""
    key = spec.group_by[-1]
    if spec.rows is None:
        present = list(dict.fromkeys(r[key] for r in records))
        return {"rows": present, "not_evaluated": [], "records": list(records)}
    have = {r[key] for r in records}
    present = [r for r in spec.rows if r in have]
    return {
        "rows": present,
        "not_evaluated": [r for r in spec.rows if r not in have],
        "records": [r for r in records if r[key] in present],
    }


def _pivot_table(summary: Sequence[Mapping[str, Any]], spec: TableSpec,
                 sort_key: Callable[[tuple], Any] | None) -> list[str]:
    col: Column = spec.columns[0]
    labels = [g for g in spec.group_by if g != spec.pivot]
    values = sorted({float(r[spec.pivot]) for r in summary})
    rows: dict[tuple, dict[float, Any]] = {}
    for r in summary:
        rows.setdefault(tuple(str(r.get(g, "")) for g in labels), {})[float(r[spec.pivot])] = r.get(f"{col.key}_mean")
    lines = ["| " + " | ".join(labels) + " | " + " | ".join(f"×{v:g}" for v in values) + " | mean |",
             "|" + "---|" * (len(labels) + len(values) + 1)]
    for key, vals in sorted(rows.items(), key=(lambda kv: sort_key(kv[0])) if sort_key else (lambda kv: kv[0])):
        cells, finite = [], []
        for v in values:
            x = vals.get(v)
            if x is None or not math.isfinite(float(x)):
                cells.append("–")
            else:
                cells.append(f"{float(x):.{col.decimals}f}")
                finite.append(float(x))
        mean = f"{np.mean(finite):.{col.decimals}f}" if len(finite) == len(values) else "–"
        lines.append("| " + " | ".join(key) + " | " + " | ".join(cells) + f" | {mean} |")
    return lines


def markdown_table(summary: Sequence[Mapping[str, Any]], spec: TableSpec,
                   sort_key: Callable[[tuple], Any] | None = None, heading: bool = False) -> str:
    """A Markdown table of summary rows (:func:`~monai_inr.metrics.protocol.summarize` output).

    Metric tables: one row per group (``spec.rows`` order when given), columns ``<group keys> | n | <columns>``,
    cells :func:`format_cell`. Pivot tables: one row per group without the pivot key (sorted, or by ``sort_key`` of the
    row labels), one column per pivot value with the mean of the first column's metric, and the mean over them.
    ``heading`` puts the title and note first.
    """
    lines: list[str] = [spec.title, ""] if heading else []
    if heading and spec.note:
        lines += [spec.note, ""]
    if spec.pivot is not None:
        lines += _pivot_table(summary, spec, sort_key)
        return "\n".join(lines) + "\n"
    labels = [g.capitalize() if g == "method" else g for g in spec.group_by]
    lines.append("| " + " | ".join(labels) + " | n | " + " | ".join(c.label for c in spec.columns) + " |")
    lines.append("|" + "---|" * (len(labels) + 1 + len(spec.columns)))
    ordered = list(summary)
    if spec.rows is not None:
        last = spec.group_by[-1]
        ordered = [r for name in spec.rows for r in summary if r[last] == name]
    elif sort_key is not None:
        ordered = sorted(summary, key=lambda r: sort_key(tuple(r[g] for g in spec.group_by)))
    for r in ordered:
        keys = " | ".join(f"{r[g]:g}" if isinstance(r[g], float) else str(r[g]) for g in spec.group_by)
        lines.append(f"| {keys} | {r['n']} | " + " | ".join(format_cell(r, c.key, c.decimals) for c in spec.columns)
                     + " |")
    return "\n".join(lines) + "\n"


def format_results_table(summary: Sequence[Mapping[str, Any]], metric: str = "psnr", decimals: int = 2) -> str:
    """Rows (reference, method), columns scales, cells the mean of ``<metric>``; reference-free rows last."""
    spec = TableSpec(metric, metric, (Column(metric, metric, decimals),), ("reference", "method"), pivot="scale")
    return markdown_table(summary, spec, sort_key=lambda k: (k[0] == "none", k[0], k[1]))


def write_table(records: Sequence[Mapping[str, Any]], output_dir: str | os.PathLike, spec: TableSpec) -> Path:
    """``<output_dir>/<spec.name>.csv``: the summary of the table's records (header only when it has none)."""
    if records:
        return write_metrics(records, output_dir, prefix=spec.name, group_by=spec.group_by,
                             metric_keys=spec.metric_keys)["csv"][None]
    header = ",".join([*spec.group_by, "n", *spec.metric_keys]) + "\n"
    return write_text_atomic(Path(output_dir) / f"{spec.name}.csv", header)


def summaries(records: Sequence[Mapping[str, Any]], spec: TableSpec) -> list[dict]:
    """:func:`~monai_inr.metrics.protocol.summarize` of a table's records over its groups and columns."""
    return summarize(records, group_by=spec.group_by, metric_keys=spec.metric_keys) if records else []


def write_report(
    records: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    tables: Sequence[TableSpec],
    intro: Sequence[str],
    metric_keys: Sequence[str] | None = None,
    group_by: Sequence[str] = ("method",),
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The evaluation's files: one CSV per table (:func:`write_table`), ``metrics.json`` and ``metrics.csv`` of all
    records (:func:`write_metrics`, with every table's rows and summary in its metadata) and ``results.md`` (``intro``
    lines, then every table with its title and note; rows without records listed as not evaluated).

    Returns:
        ``{"json": Path, "csv": {table: Path}, "markdown": Path, "summaries": {table: summary rows}}``.
    """
    out = Path(output_dir)
    selected = {s.name: select_rows(records, s) for s in tables}
    sums = {s.name: summaries(selected[s.name]["records"], s) for s in tables}
    meta = {
        **dict(metadata or {}),
        "tables": {n: {"rows": t["rows"], "not_evaluated": t["not_evaluated"], "summary": sums[n]}
                   for n, t in selected.items()},
    }
    csvs = {s.name: write_table(selected[s.name]["records"], out, s) for s in tables}
    res = write_metrics(records, out, prefix="metrics", group_by=group_by, metric_keys=metric_keys, metadata=meta)
    md = list(intro)
    for s in tables:
        t = selected[s.name]
        md += [s.title, ""] + ([s.note, ""] if s.note else [])
        if not t["rows"]:
            missing = f" (not evaluated: {', '.join(t['not_evaluated'])})" if t["not_evaluated"] else ""
            md += [f"No rows evaluated{missing}.", ""]
            continue
        md.append(markdown_table(sums[s.name], s.with_rows(t["rows"])).rstrip("\n"))
        if t["not_evaluated"]:
            md += ["", f"Not evaluated (no method configured): {', '.join(t['not_evaluated'])}."]
        md.append("")
    path = write_text_atomic(out / "results.md", "\n".join(md))
    return {"json": res["json"], "csv": csvs, "markdown": path, "summaries": sums}


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> str:
    """Save a matplotlib figure atomically (PNG by the path's suffix)."""
    return str(write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi)))


def write_montage(
    panels: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    reference: np.ndarray | None = None,
    title: str = "",
    error_range: float = 0.2,
    profile: bool = True,
) -> str:
    """One slice per method side by side (``panels``, intensities in [0, 1]); with a ``reference``, a second row of
    absolute error maps ``|panel - reference|`` (shared colour scale up to ``error_range``) and the reference first,
    and (``profile``) a third row with every method's intensity profile along the slice's middle row against the
    reference's (edges blurred or overshot show there first).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = dict(panels) if reference is None else {"reference": reference, **panels}
    with_profile = reference is not None and profile
    rows = 1 if reference is None else (3 if with_profile else 2)
    fig, axes = plt.subplots(rows, len(images), figsize=(2.6 * len(images), 2.8 * rows), squeeze=False)
    for j, (name, img) in enumerate(images.items()):
        axes[0, j].imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(name, fontsize=8)
        if reference is not None and j > 0:  # the reference's own error map would be empty
            err = np.abs(np.asarray(img, np.float64) - reference)
            im = axes[1, j].imshow(err, cmap="magma", vmin=0, vmax=error_range)
            axes[1, j].set_title(f"|error| mean {err.mean():.3f}", fontsize=7)
    for a in axes[:2].ravel():
        a.axis("off")
    if reference is not None:
        fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8)
        row = int(np.asarray(reference).shape[0]) // 2
        for j in range(len(images)):
            axes[0, j].axhline(row, color="yellow", lw=0.5, alpha=0.6)
    if with_profile:
        for a in axes[2, 1:]:
            a.remove()
        ax = fig.add_subplot(rows, 1, rows)
        for name, img in images.items():
            ax.plot(np.asarray(img, np.float64)[row], lw=1.6 if name == "reference" else 0.9,
                    color="black" if name == "reference" else None, label=name)
        ax.set_xlabel(f"voxel along row {row}", fontsize=7)
        ax.set_ylabel("intensity", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, ncol=min(len(images), 6), loc="upper right")
        axes[2, 0].remove()
    if title:
        fig.suptitle(title, fontsize=9)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
