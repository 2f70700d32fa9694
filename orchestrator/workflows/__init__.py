"""The workflows over the pipeline: ``profile`` (who is good at what), ``calibrate`` (a policy's
thresholds to a target), ``evaluate`` (a benchmark with baselines, scored and reported; its
output folder in ``out_dir``). Each asks the pipeline and adds only what is its own."""
