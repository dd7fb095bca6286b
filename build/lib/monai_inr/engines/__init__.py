"""Ignite glue of the bundles: prepare-batch functions, up-front checks, handlers and training steps."""

from .checks import (
    as_file_list,
    check_inference_outputs,
    check_output_paths,
    load_checkpoint,
    network_from_checkpoint,
    save_network_checkpoint,
    validate_headers,
    validate_inputs,
    validate_scale,
    validate_target_reference,
    warn_untrained_scale,
)
from .prepare_batch import (
    PrepareBatchCoordinates,
    PrepareBatchNexus,
    PrepareBatchNexusVolume,
    PrepareBatchOutputGrid,
    PrepareBatchReference,
    PrepareBatchTargetSpacing,
)
from .curriculum import CurriculumState, CurRandomCurriculum
from .early_stopping import MIEarlyStopping
from .threads import AdaptiveThreads, fair_threads, use_fair_threads
