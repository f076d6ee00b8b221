"""benchlib: what the benchmark scripts of benchmarks/ share; the scripts are its commands, no script imports another.

  report.py            every benchmark's results folder (report.md, setup.json, data files) and its --out option
  apache_bench.py      ab: the command line, one run, and what its output says
  private_server.py    the private TorchServe a benchmark starts, stopped and waited for (BenchServer)
  model_archive.py     a benchmark's workdir, the RAG archive in it, configs/rag-docs.yaml with compile off
  ts_metrics.py        TorchServe's own timings of a run, read from its metric logs
  endpoint_profile.py  bench_endpoints.py's profile (benchmarks/profile*.yaml) and its cells
  endpoint_runner.py   bench_endpoints.py's runs: workdir, index, archive, server and ab per cell
  endpoint_report.py   bench_endpoints.py's results.csv, report.md and throughput.png
  retrieval_eval.py    the retrieval eval's shared parts: the served blog mirror, a variant's config, the hit test
  misses.py            why retrieval missed a question: extraction, split, page missing, wrong page or wrong chunk
  answers.py           the answer eval's shared parts: hits per question, LLM setting, batched answers, scores
  embedders.py         embed_bench.py's variants: sentence-transformers, the Encoder eager or compiled, ONNX
                       Runtime float32 or int8, torch.ao dynamic int8
Scripts run as `python benchmarks/<script>.py` (benchmarks/ is then on sys.path) import it as `benchlib.<module>`.
"""
