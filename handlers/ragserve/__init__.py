"""ragserve: retrieval-augmented prompts and LLM answers, importable and testable without TorchServe.

Modules: config (typed yaml), crawl and corpus (documents -> chunks), embeddings and compilation
(the encoder), builder (the offline write side: refresh, embedding cache in embedcache, publish,
rollback), store (the read side: immutable index versions, FAISS + BM25 in lexical) and follow (a
worker's swap to a newly published version), filters (metadata filters), prompt, pipeline (the RAG
endpoint's work), openai_api (the OpenAI-compatible routes of both endpoints), llm_requests and ragclient
(the LLM endpoint's requests; grounded chat asks the RAG endpoint over HTTP),
generation (the LLM endpoint's work), serving (request decoding). The TorchServe handlers in
handlers/ are thin adapters over these.
"""

__version__ = "0.2.0"
