"""Executing stage graphs: stages and their content-addressed cache (`stages`, `integrity`,
`fsio`, `cache_admin`), the local executor and its worker processes (`executors`, `parallel`,
`workers`), the per-process environment stages run in (`runtime`, `device`, `signals`), pinned kernels
(`determinism`) and the record of where a run's stages ran (`provenance`)."""
