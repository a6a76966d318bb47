"""livewatch's benchmark against the reference pipeline (`make bench`; not part of the test suite).

Modules: `media` (test segments), `model` (a random I3D-ResNet50), `machine` (matmul peak, FLOPs),
`reference_worker` and `livewatch_worker` (each pipeline in its own process), `baseline`
(livewatch before the speed work, for the per-step columns), `daemon_run`
(end-to-end latency through `livewatch run`), `report` (table + JSON), `bench` (the driver).
"""
