from .checks import (
    as_file_list,
    load_checkpoint,
    network_from_checkpoint,
    save_network_checkpoint,
    validate_inputs,
    validate_scale,
)
from .evaluation import BASELINE_ORDERS, SuperResolutionMetrics, with_scales
from .prepare_batch import PrepareBatchOutputGrid
from .curriculum import CurriculumState, CurRandomCurriculum
from .multi_contrast import (
    PrepareBatchReference,
    ReferenceSRMetrics,
    reference_eval_items,
    validate_target_reference,
)
from .early_stopping import MIEarlyStopping
from .fitting import ContrastPair, MultiContrastGridInferer, SharedFrame, fit_pair
from .nexus import NexusVolumeInferer, PrepareBatchNexus, PrepareBatchNexusVolume, predict_subject
