"""fastml benchmarks: ``python -m benchmarks run [--quick]`` prints a table, writes ``benchmarks/results/<date>.json``.

Groups (one module each): ``verify`` (verification throughput per simulation level), ``build`` (stage
times vs hand-written hls4ml / conifer scripts), ``memory`` (peak RSS of the build), ``quality``
(accuracy / EBOPs / LUT / FF / DSP / latency over a beta sweep, with the published figures' sources)
and ``keras_backend`` (JAX vs TensorFlow training speed). Every number is measured when the runner
runs; a row that cannot run says ``not run: <why>``. See ``benchmarks/README.md``.
"""
