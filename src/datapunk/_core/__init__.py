"""The core: stages, validators, pipelines, the fused loop and the run report."""
