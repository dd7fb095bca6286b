from .checks import as_file_list, load_checkpoint, validate_inputs, validate_scale
from .prepare_batch import PrepareBatchOutputGrid
from .curriculum import CurriculumState, CurRandomCurriculum
from .multi_contrast import PrepareBatchReference, validate_target_reference
from .early_stopping import MIEarlyStopping
from .fitting import ContrastPair, MultiContrastGridInferer, SharedFrame
from .nexus import NexusVolumeInferer, PrepareBatchNexus, PrepareBatchNexusVolume, predict_subject
