"""ragserve_ops: the tooling around the ragserve package, never shipped in a model archive.

  client.py    TorchServe client: keys, readiness, streaming (stdlib only); `scripts/tsclient.py`
  server.py    a private TorchServe for tests and benchmarks, on a free port block (ports.py)
  archive.py   model archives (`make archive`, `scripts/archive.py`)
  ask.py       the question -> RAG -> LLM client behind `make ask` (`scripts/query.py`)
  testing.py   test support: paths, tiny models, the test servers' factory, TorchServe context, handler loading
It imports ragserve; ragserve never imports it (tests/test_archive.py), so workers load without it.
"""
