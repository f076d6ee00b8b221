"""ragserve: retrieval-augmented prompts and LLM answers, importable and testable without TorchServe.

The two TorchServe handlers in handlers/ are thin adapters: rag_handler.py over
retrieval.pipeline.RAGPipeline, llm_handler.py over api.llm_service.LLMService. This is the package's one
module list (README and docs point here).

Layers, bottom up; each imports only its own and those below (tests/test_layout.py):
config/, runtime.py, compilation.py < ingest/, embedding/ < index/ < retrieval/, llm/ < api/ < the handlers.

RAG endpoint, write side (offline: `make index` / `make refresh`, never in a worker)
  ingest/crawl.py        fetch a site: same-site breadth-first, conditional requests, as robots.txt allows
  ingest/robots.py       a site's robots.txt (RFC 9309, stdlib parser): what a crawl may fetch, its Crawl-delay
  ingest/html.py         a page's main content as markdown-shaped text, decoded as a browser decodes it
  ingest/corpus.py       local files or crawled pages -> documents -> chunks
  ingest/structure.py    structure-aware chunks: sections and API entries, code whole, each with its heading path
  ingest/metadata.py     page title, dates, authors and tags
  index/builder.py       refresh: embed only new text, write an immutable version
  index/versions.py      publish, roll back, hold and prune a line's versions; fsynced writes and the line's lock
  embedding/cache.py     SQLite embedding cache keyed by text and model identity
  embedding/fingerprint.py  a model folder's content sha256 (its identity), stored beside it
  embedding/progress.py  progress of long embedding runs: a tqdm bar, or a log line every 30 s
  embedding/distributed.py  the same embedding on a Ray cluster (Ray Data, one Encoder per worker)
RAG endpoint, read side (every worker)
  index/line.py          where a line of versions lives and what identifies it (its key, CURRENT, HOLD, history)
  index/store.py         IndexVersion, the live version: FAISS vectors (memory-mapped), chunks, BM25
  index/ann.py           which FAISS index a version holds: flat (exact) or HNSW / IVF past index.ann_min_chunks
  index/follow.py        swap to a newly published version between batches
  index/bm25.py          BM25 terms; index/vectorsets.py, index/windows.py: vector sets per chunk and per
                         sentence window; index/pages.py: the page level (records, their BM25 and vectors),
                         built and saved with the version, so a worker builds nothing
  embedding/encoder.py   the Encoder (LangChain Embeddings): tokenize -> backend -> unit vectors
  embedding/adapter.py   the query adapter (`make adapt`): a linear map of question vectors, trained on the
                         corpus's own heading -> text pairs; applied before every dense score
  embedding/backends.py  one backend interface: torch eager or compiled, ONNX Runtime (embedding/onnxrt.py);
                         embedding/module.py is the torch module they all run; embedding/int8.py prepares
                         the int8 ONNX export (smoothed, outlier channels in float32)
  retrieval/retriever.py hybrid search: dense + BM25 fused (retrieval/fusion.py), page and window scores,
                         metadata filters (retrieval/filters.py); retrieval/rerank.py: optional cross-encoder
  retrieval/prompt.py    the original demo's Llama prompt around the top-k chunks
  retrieval/queries.py   what the pipeline is asked (a question, v1/retrieval, v1/embeddings), decoded by api/
  retrieval/pipeline.py  RAGPipeline: one embed and one search per batch -> plain results (hits, prompt, vectors);
                         api/openai_rag.py turns them into wire bodies
LLM endpoint, the model (no request or reply shapes: api/ turns its results into replies)
  llm/generation.py      Generator: any Hugging Face causal LM, batched, optionally compiled (static cache)
  llm/quantization.py    torchao weight quantization (model.quantization) and its token-agreement gate
  llm/streaming.py       text pieces as they decode; llm/inflight.py: transformers' continuous batching
Requests and replies of both endpoints (above both engines; the handlers import it)
  api/contracts.py       the endpoints' own contracts (text or JSON) decoded and checked
  api/openai_api.py      OpenAI-compatible routes, what both share: the route, OpenAI's error shape, v1/models
  api/openai_rag.py      v1/embeddings and v1/retrieval decoded, and every RAG result as its wire body
  api/openai_chat.py     v1/chat/completions decoded, and its reply as JSON or server-sent events
  api/citations.py       grounded chat's sources as OpenAI url_citation annotations
  api/llm_routes.py      every LLM route's request decoded from the wire (no engine, no HTTP)
  api/llm_service.py     LLMService: a request decoded, grounded, counted, admitted, run -> its reply
  api/turns.py           one TorchServe continuous-batching turn; api/ragclient.py: grounded chat's RAG call
  api/replies.py         one Reply per request and one error shape (OpenAI's error object) for everything
  api/redirects.py       urllib's opener without Authorization on a redirect to another host
Shared
  config/                both endpoints' typed configuration: config/parsing.py (sections, checks, override),
                         config/shared.py (compile, runtime), config/rag.py (Config; its index, retrieval and
                         rerank sections: config/search.py), config/llm.py (LLMConfig),
                         config/reference.py (the reference; config/__main__.py prints it)
  runtime.py             the runtime section applied: device and threads
  compilation.py         torch.compile policy and warm-up
Tooling (build, serve and test; never shipped): the ragserve_ops package beside this one
"""

__version__ = "0.3.0"
