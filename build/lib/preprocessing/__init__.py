"""Clinical sodium MRI preprocessing for the ArRFR bundle (paper section 4.2.1).

Modules:

* :mod:`~preprocessing.trajectory` density-adapted 3D radial trajectories (golden means);
* :mod:`~preprocessing.dcf` analytic density compensation and apodisation windows;
* :mod:`~preprocessing.nufft` one NUFFT operator over pynufft (required), finufft (optional) and a direct DFT;
* :mod:`~preprocessing.rawdata` the raw k-space file layout (HDF5 / NPZ);
* :mod:`~preprocessing.grid` reconstruction grids, resampling, ground truth at a resolution, NRMSE;
* :mod:`~preprocessing.reconstruction` gridding, CG least squares, root-sum-of-squares;
* :mod:`~preprocessing.simulation` sodium acquisitions and misaligned T2w from the synthetic brain;
* :mod:`~preprocessing.rigid` rigid transforms and their errors;
* :mod:`~preprocessing.dicom` DICOM series I/O through ITK;
* :mod:`~preprocessing.registration` 2x cubic-spline upsampling and ANTs rigid registration;
* :mod:`~preprocessing.prepare` padding, slicing, normalisation and the datalist;
* :mod:`~preprocessing.outputs` BIDS-derivative names, sidecars, logs, QC figures, all-or-nothing writing;
* :mod:`~preprocessing.pipeline` / :mod:`~preprocessing.cli` the steps and ``python -m preprocessing``.

Heavy dependencies (pynufft, antspyx, itk, matplotlib) are imported only where used.
"""

from .dcf import compute_dcf, shell_dcf, window
from .grid import PAPER_SHAPE, PAPER_SPACING_MM, ReconGrid, nrmse, paper_grid, reference_image
from .nufft import NufftOperator, available_backends
from .rawdata import RawData, read_raw, write_raw
from .reconstruction import ReconConfig, reconstruct
from .trajectory import da_radial_trajectory, golden_means_directions

__all__ = [
    "PAPER_SHAPE",
    "PAPER_SPACING_MM",
    "ReconGrid",
    "paper_grid",
    "reference_image",
    "nrmse",
    "NufftOperator",
    "available_backends",
    "RawData",
    "read_raw",
    "write_raw",
    "ReconConfig",
    "reconstruct",
    "compute_dcf",
    "shell_dcf",
    "window",
    "da_radial_trajectory",
    "golden_means_directions",
]
