"""SuperDARN data-flow telemetry: summary logs, flags and data files of the pipeline."""
