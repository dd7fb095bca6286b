"""Evaluation of every bundle: methods as callables, one runner, one report writer, each paper's tables as data.

* :mod:`~monai_inr.evaluation.methods`: ``method(item) -> predictions on the ground-truth grid`` (interpolation with
  the single :data:`~monai_inr.evaluation.methods.BASELINE_ORDERS` table, any bundle's network + inferer);
* :mod:`~monai_inr.evaluation.runner`: :class:`EvaluationRunner` (items -> methods -> protocol -> records);
* :mod:`~monai_inr.evaluation.report`: ``metrics.json``/CSV, Markdown tables, figures, all written atomically;
* :mod:`~monai_inr.evaluation.tables`: :class:`TableSpec` per paper table;
* :mod:`~monai_inr.evaluation.bundle`: a bundle's own configuration run from an evaluation (one definition per method);
* :mod:`~monai_inr.evaluation.handlers`: the protocol as ignite handlers of a bundle's ``SupervisedEvaluator``;
* per method: :mod:`~monai_inr.evaluation.multi_contrast_inr`, :mod:`~monai_inr.evaluation.nexus`,
  :mod:`~monai_inr.evaluation.arrfr`, and the downstream :mod:`~monai_inr.evaluation.segmentation`.
"""

from .bundle import SubjectFit, fit_subject, network_from_bundle, run_bundle
from .handlers import ReferenceSRMetrics, SuperResolutionMetrics, foreground_slices, reference_eval_items, with_scales
from .methods import (
    BASELINE_ORDERS,
    ArSSRMethod,
    InterpolationMethod,
    Method,
    MultiContrastINRMethod,
    NexusINRMethod,
    baseline_order,
    interpolate,
)
from .report import format_results_table, markdown_table, save_figure, write_metrics, write_montage, write_table
from .runner import Evaluation, EvaluationRunner, Reference, load_reference, protocol_scores, read_datalist
from .tables import Column, TableSpec
