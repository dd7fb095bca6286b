"""MONAI transforms for INR super-resolution: degradations (LR generation) and training-sample construction.

Array transforms take channel-first images ``(C, *spatial)`` (MetaTensor, or numpy/torch with an explicit ``affine``)
and return MetaTensors whose affine describes the new grid; dictionary variants end in ``d``. Geometry follows
:mod:`monai_inr.coords` (cell-centred grids, FOV centre kept).
"""

from .degradation import (
    PhysicalAcquisition,
    PhysicalAcquisitiond,
    RandRicianNoiseSNR,
    RandRicianNoiseSNRd,
    RandSmoothPhase,
    RandSmoothPhased,
    white_matter_reference,
    CubicDownsample,
    CubicDownsampled,
    KSpaceCrop,
    KSpaceCropd,
    RandRicianNoise,
    RandRicianNoised,
    StrideDecimation,
    StrideDecimationd,
    ThickSliceAcquisition,
    ThickSliceAcquisitiond,
    validate_downsampling_scale,
)
from .functional import (
    anti_alias_sigma,
    apply_along_axis,
    centred_fft,
    centred_ifft,
    kspace_alignment_shift,
    kspace_crop,
    kspace_crop_slice,
    resample_to_grid,
    resize_cell_centred,
    slice_centres,
    slice_profile_matrix,
    thick_slice,
)
from .sampling import (
    FullGridCoordinatesd,
    RandCoordinateSampled,
    RandScalePatchPairSampled,
    draw_voxel_indices,
    reference_frame_coordinates,
    sample_coordinates,
    scale_grid,
)
from .intensity import (
    INTENSITY_MAX,
    INTENSITY_MIN,
    MinMaxNormalize,
    MinMaxNormalized,
    RestoreIntensityd,
)
from .io import (
    CheckVolumed,
    LoadMagnituded,
    LoadNexusPaird,
    LoadVolumed,
    SaveContrastsd,
    SaveNexusOutputsd,
    SaveVolumed,
    output_path_for,
)
from .utils import (
    DEGRADATION_KEY,
    DEGRADATION_SCALE_KEY,
    NOISE_REFERENCE_KEY,
    NOISE_SIGMA_KEY,
    SNR_KEY,
    grid_affine,
    translate_affine,
)

__all__ = [
    "PhysicalAcquisition",
    "PhysicalAcquisitiond",
    "RandRicianNoiseSNR",
    "RandRicianNoiseSNRd",
    "RandSmoothPhase",
    "RandSmoothPhased",
    "white_matter_reference",
    "NOISE_SIGMA_KEY",
    "SNR_KEY",
    "NOISE_REFERENCE_KEY",
    "CubicDownsample",
    "CubicDownsampled",
    "KSpaceCrop",
    "KSpaceCropd",
    "ThickSliceAcquisition",
    "ThickSliceAcquisitiond",
    "RandRicianNoise",
    "RandRicianNoised",
    "StrideDecimation",
    "StrideDecimationd",
    "validate_downsampling_scale",
    "resize_cell_centred",
    "resample_to_grid",
    "anti_alias_sigma",
    "centred_fft",
    "centred_ifft",
    "kspace_crop_slice",
    "kspace_alignment_shift",
    "kspace_crop",
    "slice_centres",
    "slice_profile_matrix",
    "apply_along_axis",
    "thick_slice",
    "RandScalePatchPairSampled",
    "RandCoordinateSampled",
    "FullGridCoordinatesd",
    "sample_coordinates",
    "draw_voxel_indices",
    "reference_frame_coordinates",
    "scale_grid",
    "DEGRADATION_SCALE_KEY",
    "DEGRADATION_KEY",
    "grid_affine",
    "translate_affine",
    "MinMaxNormalize",
    "MinMaxNormalized",
    "RestoreIntensityd",
    "INTENSITY_MIN",
    "INTENSITY_MAX",
    "LoadVolumed",
    "CheckVolumed",
    "LoadMagnituded",
    "LoadNexusPaird",
    "SaveVolumed",
    "SaveContrastsd",
    "SaveNexusOutputsd",
    "output_path_for",
]

from .multi_contrast_sampling import (
    CropToMultipled,
    ExactKSpaceCropd,
    RandPairedScalePatchd,
    RandSliced,
    SelectSliced,
    crop_or_pad_to_multiple,
    exact_lr_size,
    select_slice,
    slice_affine,
)

__all__ += [
    "CropToMultipled",
    "ExactKSpaceCropd",
    "RandPairedScalePatchd",
    "RandSliced",
    "SelectSliced",
    "crop_or_pad_to_multiple",
    "exact_lr_size",
    "select_slice",
    "slice_affine",
]

from .multiscale import DOWNSAMPLE_MODES, MultiScaleDownsampled, lr_key, lr_query_grid, make_downsampler

__all__ += ["MultiScaleDownsampled", "lr_key", "lr_query_grid", "make_downsampler", "DOWNSAMPLE_MODES"]

from .nexus_sampling import MODALITIES, NexusZScored, RandNexusPatchd, slice_factors_of, zscore_stats

__all__ += ["MODALITIES", "NexusZScored", "RandNexusPatchd", "slice_factors_of", "zscore_stats"]

from .pretext import PRETRAINING_TASKS, PretextLabeld

__all__ += ["PRETRAINING_TASKS", "PretextLabeld"]

from .acquisition import RandPhysicalAcquisition, WhiteMatterLeveld

__all__ += ["RandPhysicalAcquisition", "WhiteMatterLeveld"]
