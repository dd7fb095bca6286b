"""The monai-inr MONAI Label app: a super-resolution infer task (:mod:`lib.infers`) built on a plain core
(:mod:`lib.core`) that needs only ``monai_inr``."""
