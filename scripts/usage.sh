#!/usr/bin/env bash
# Printed at the end of `make run`: how to query and stop the server.
cat <<'TXT'

TorchServe is running (logs in logs/). Query the RAG endpoint:
  KEY=$(.venv/bin/python scripts/tsclient.py key)
  curl -X POST http://127.0.0.1:8080/predictions/rag -H "Authorization: Bearer $KEY" \
       -H "Content-Type: text/plain" -d "How is the index built?"
  curl -X POST http://127.0.0.1:8080/predictions/rag -H "Authorization: Bearer $KEY" \
       -H "Content-Type: application/json" -d '{"question": "How is the index built?", "k": 3}'
  make ask Q="How is the index built?"
Stop it with: make stop
TXT
