"""ragserve: retrieval-augmented prompts and LLM answers, importable and testable without TorchServe.

Modules: config (typed yaml), crawl and corpus (documents -> chunks), embeddings and compilation
(the encoder), index and lexical (FAISS + BM25), prompt, pipeline (the RAG endpoint's work),
generation (the LLM endpoint's work), serving (request decoding). The TorchServe handlers in
handlers/ are thin adapters over these.
"""

__version__ = "0.2.0"
