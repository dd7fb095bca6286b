"""Ignite glue of the bundles: prepare-batch functions, up-front checks, handlers and training steps."""

from .checks import (
    as_file_list,
    load_checkpoint,
    validate_headers,
    validate_inputs,
    validate_scale,
    validate_target_reference,
)
from .evaluation import BASELINE_ORDERS, SuperResolutionMetrics, with_scales
from .prepare_batch import (
    PrepareBatchCoordinates,
    PrepareBatchNexus,
    PrepareBatchNexusVolume,
    PrepareBatchOutputGrid,
    PrepareBatchReference,
    PrepareBatchTargetSpacing,
)
from .curriculum import CurriculumState, CurRandomCurriculum
from .multi_contrast import ReferenceSRMetrics, reference_eval_items
from .early_stopping import MIEarlyStopping
from .fitting import fit_pair
