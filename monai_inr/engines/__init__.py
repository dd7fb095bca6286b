from .checks import as_file_list, load_checkpoint, validate_inputs, validate_scale
from .evaluation import BASELINE_ORDERS, SuperResolutionMetrics, with_scales
from .prepare_batch import PrepareBatchOutputGrid
