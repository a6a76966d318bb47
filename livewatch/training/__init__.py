"""The model's side: data prep, fine-tuning, packaging, and the offline demo.

`livewatch model prep|train|package|info` and `livewatch demo` (see `commands`). MXNet and GluonCV
are imported inside the functions that need them, so the command line stays fast.
"""
