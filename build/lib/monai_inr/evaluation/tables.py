"""Each paper's results table as data: which records form its rows, which metrics its columns, how it is grouped.

A :class:`TableSpec` is rendered by :func:`monai_inr.evaluation.report.markdown_table` (and written as CSV by
:func:`monai_inr.evaluation.report.write_table`); the numbers themselves always come from
:func:`monai_inr.metrics.protocol.summarize` (mean, sample SD and count over subjects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "Column",
    "TableSpec",
    "image_columns",
    "segmentation_columns",
    "NEXUS_TABLES",
    "reference_sr_tables",
    "ARRFR_NOREF_COLUMNS",
    "ARRFR_REF_KEYS",
]


@dataclass(frozen=True)
class Column:
    """One table column: its heading, the record metric it shows, and the decimals of its cells."""

    label: str
    key: str
    decimals: int = 4


@dataclass(frozen=True)
class TableSpec:
    """A results table.

    Args:
        name: file stem of its CSV (``<name>.csv``) and its key in ``metrics.json``.
        title: Markdown heading.
        columns: metric columns; for a ``pivot`` table only the first one is shown (one column per pivot value).
        group_by: record keys whose values label the rows (the summary groups).
        rows: row order and selection (values of the last ``group_by`` key); ``None``: every group in order of
            appearance. Rows without records are listed as not evaluated.
        pivot: a group key (e.g. ``"scale"``) whose values become the columns, plus a ``mean`` column.
        note: a paragraph under the heading.
        extra_keys: further metrics summarised in the CSV and JSON but not shown in the Markdown table.
    """

    name: str
    title: str
    columns: tuple[Column, ...]
    group_by: tuple[str, ...] = ("method",)
    rows: tuple[str, ...] | None = None
    pivot: str | None = None
    note: str = ""
    extra_keys: tuple[str, ...] = ()

    @property
    def metric_keys(self) -> list[str]:
        """The summarised metrics: the columns' keys, then ``extra_keys`` (CSV and JSON only, not in Markdown)."""
        return [c.key for c in self.columns] + list(self.extra_keys)

    def with_rows(self, rows: Sequence[str] | None) -> "TableSpec":
        from dataclasses import replace

        return replace(self, rows=None if rows is None else tuple(rows))


def image_columns(names: Sequence[str] = ("t1w", "t2w"), labels: Sequence[str] = ("T1w", "T2w")) -> tuple[Column, ...]:
    """PSNR / SSIM per contrast and averaged (``<metric>_avg``), then inside the mask: the columns of Nexus-INR's
    Table 1 and Table 2 (Zhang et al., arXiv 2508.03073, 2025)."""
    cols = [Column(f"PSNR {l}", f"psnr_{n}", 2) for n, l in zip(names, labels)] + [Column("PSNR Avg", "psnr_avg", 2)]
    cols += [Column(f"SSIM {l}", f"ssim_{n}", 4) for n, l in zip(names, labels)] + [Column("SSIM Avg", "ssim_avg", 4)]
    cols += [Column(f"PSNR-mask {l}", f"psnr_mask_{n}", 2) for n, l in zip(names, labels)]
    cols += [Column(f"SSIM-mask {l}", f"ssim_mask_{n}", 4) for n, l in zip(names, labels)]
    return tuple(cols)


def segmentation_columns(classes: Sequence[str]) -> tuple[Column, ...]:
    """Dice and HD95 (mm) per region, then their means: the columns of Nexus-INR's Table 5."""
    cols = []
    for name in classes:
        label = name.replace("_", " ")
        cols += [Column(f"Dice {label}", f"dice_{name}", 4), Column(f"HD95 {label} (mm)", f"hd95_{name}", 2)]
    return tuple(cols) + (Column("Dice mean", "dice", 4), Column("HD95 mean (mm)", "hd95", 2))


#: Nexus-INR (Zhang et al., arXiv 2508.03073, 2025): Table 1 (comparison), Table 2 (ablation), Table 5 (downstream
#: segmentation); rows are set by the evaluation's configuration (:meth:`TableSpec.with_rows`).
NEXUS_TABLES: dict[str, TableSpec] = {
    "comparison": TableSpec("comparison", "## Comparison (paper Table 1)", image_columns()),
    "ablation": TableSpec("ablation", "## Ablation (paper Table 2)", image_columns(), rows=()),
    "segmentation": TableSpec(
        "segmentation", "## Downstream segmentation (paper Table 5)", segmentation_columns(("tumour_core", "oedema")),
        extra_keys=("miss_tumour_core", "miss_oedema"),
    ),
}


def reference_sr_tables() -> list[TableSpec]:
    """Dual-ArbNet (Zhang et al., MICCAI 2023) per-reference tables: rows (reference, method), one column per scale,
    mean over slices; PSNR (dB) and SSIM, data range 1."""
    group = ("reference", "method")
    return [
        TableSpec("psnr", "## PSNR (dB, data range 1)", (Column("PSNR", "psnr", 2),), group, pivot="scale"),
        TableSpec("ssim", "## SSIM (data range 1)", (Column("SSIM", "ssim", 4),), group, pivot="scale"),
    ]


#: ArRFR no-reference metrics (paper Table 1): PSI up, LPC-SI up, BRISQUE down.
ARRFR_NOREF_COLUMNS: tuple[Column, ...] = (
    Column("PSI", "psi", 4), Column("LPC-SI", "lpc_si", 4), Column("BRISQUE", "brisque", 4)
)
#: ArRFR reference metrics on synthetic data (against the true concentration and the T2w).
ARRFR_REF_KEYS: tuple[str, ...] = (
    "psnr_truth", "ssim_truth", "psnr_truth_mask", "ssim_truth_mask", "psnr_t2w", "ssim_t2w"
)
