#!/usr/bin/env python3
"""Ask a question through the RAG endpoint and (unless --rag-only) the LLM endpoint.

  python scripts/query.py "What's new with Llama 3.1?"              # RAG prompt -> LLM answer
  python scripts/query.py --rag-only "What's new with Llama 3.1?"   # print the RAG prompt only
  python scripts/query.py --stream "What's new with Llama 3.1?"     # print the answer as it is generated
  python scripts/query.py --rag-url http://cpu-host:8080/predictions/rag \\
      --llm-url http://gpu-host:8080/predictions/llm --key-file key_file.json "..."
  python scripts/query.py --llm-api openai --llm-url http://gpu-host:8080/predictions/llm "..."
      # the LLM behind TorchServe's vllm_handler (configs/llama3-8b-vllm.yaml): OpenAI chat completions
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
from collections.abc import Iterable, Iterator
from pathlib import Path

from ragserve_ops.client import INFERENCE_URL, ROOT, Keys, call, management_url_of, stream

OPENAI_CHAT = "1.0/v1/chat/completions"  # vllm_handler's route under /predictions/<model>/


def keys_for(url: str, key_file: Path) -> Keys:
    """The keys of the server behind url; an expired one is renewed through its management API (port + 1)."""
    return Keys(key_file, management_url_of(url))


def ask(url: str, text: str, key_file: Path, timeout_s: float, content_type: str = "text/plain") -> str:
    """POST text; exit with a clear message when the endpoint is down or refuses."""
    try:
        status, _, body = call(
            url, text.encode(), keys_for(url, key_file), content_type=content_type, timeout_s=timeout_s
        )
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise SystemExit(f"{url} is not reachable ({err}); is TorchServe running? (make serve)") from err
    if status != 200:
        raise SystemExit(f"{url} answered HTTP {status}: {body}")
    return body


def rag_prompt(args: argparse.Namespace) -> tuple[str, list[dict]]:
    """The RAG endpoint's prompt and its sources (a JSON request): its own top_k, or --k chunks."""
    request = {"question": args.question} if args.k is None else {"question": args.question, "k": args.k}
    reply = json.loads(ask(args.rag_url, json.dumps(request), args.key_file, args.timeout, "application/json"))
    return reply["prompt"], reply["sources"]


def source_lines(sources: list[dict]) -> list[str]:
    """What the answer rests on, one line per retrieved chunk, best first: title, where, date, score."""
    lines = []
    for rank, source in enumerate(sources, 1):
        where = source.get("url") or source.get("path") or "?"
        date = f", published {source['published']}" if source.get("published") else ""
        score = source.get("fused_score", source["score"])  # the score the chunks are ranked by
        lines.append(f"  [{rank}] {source.get('title') or where} ({where}{date}; score {score:.3f})")
    return lines


def openai_body(prompt: str, model: str, stream_reply: bool) -> bytes:
    """An OpenAI chat completion request: the RAG prompt as the user message (the server applies the template)."""
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream_reply}
    ).encode()


def openai_answer(reply: str) -> str:
    """The text of a (non-streamed) chat completion; an error reply exits with its message."""
    parsed = json.loads(reply)
    if "choices" not in parsed:
        raise SystemExit(f"the LLM answered an error: {reply}")
    return parsed["choices"][0]["message"]["content"]


def openai_deltas(chunks: Iterable[str]) -> Iterator[str]:
    """The texts of a streamed chat completion: server-sent events `data: {json}` split across chunks."""
    pending = ""
    for chunk in chunks:
        pending += chunk
        *events, pending = pending.split("\n\n")
        for event in events:
            data = event.strip().removeprefix("data:").strip()
            if data and data != "[DONE]":
                yield json.loads(data)["choices"][0]["delta"].get("content") or ""


def ask_llm(args: argparse.Namespace, prompt: str) -> None:
    """Print the LLM's answer: ragserve's endpoint (text or streamed) or an OpenAI-style one."""
    keys = keys_for(args.llm_url, args.key_file)
    if args.llm_api == "openai":
        url = f"{args.llm_url.rstrip('/')}/{OPENAI_CHAT}"
        body = openai_body(prompt, args.llm_model, args.stream)
        if args.stream:
            print("Answer: ", end="", flush=True)
            for piece in openai_deltas(stream(url, body, keys, timeout_s=args.timeout)):
                print(piece, end="", flush=True)
            print()
        else:
            status, _, reply = call(url, body, keys, content_type="application/json", timeout_s=args.timeout)
            if status != 200:
                raise SystemExit(f"{url} answered HTTP {status}: {reply}")
            print(f"Answer: {openai_answer(reply).strip()}")
    elif args.stream:
        print("Answer: ", end="", flush=True)
        body = json.dumps({"prompt": prompt, "stream": True}).encode()
        for piece in stream(args.llm_url, body, keys, timeout_s=args.timeout):
            print(piece, end="", flush=True)
        print()
    else:
        print(f"Answer: {ask(args.llm_url, prompt, args.key_file, args.timeout).strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question")
    parser.add_argument("--rag-url", default=f"{INFERENCE_URL}/predictions/rag")
    parser.add_argument("--llm-url", default=f"{INFERENCE_URL}/predictions/llm")
    parser.add_argument(
        "--key-file",
        type=Path,
        default=ROOT / "key_file.json",
        help="TorchServe's key file; an expired key is renewed through the management API (port + 1)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    parser.add_argument("--k", type=int, help="chunks in the prompt (default: the RAG endpoint's top_k)")
    parser.add_argument("--rag-only", action="store_true", help="print the RAG prompt, skip the LLM")
    parser.add_argument("--show-prompt", action="store_true", help="also print the RAG prompt")
    parser.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    parser.add_argument(
        "--llm-api",
        choices=["ragserve", "openai"],
        default="ragserve",
        help="ragserve: this project's LLM endpoint; openai: TorchServe's vllm_handler (chat completions)",
    )
    parser.add_argument("--llm-model", default="llm", help="the OpenAI request's model (served_model_name)")
    args = parser.parse_args()
    start = time.perf_counter()
    prompt, sources = rag_prompt(args)
    if args.rag_only:
        print(prompt)
        print(f"\n[RAG prompt in {time.perf_counter() - start:.2f} s]", file=sys.stderr)
        return
    if args.show_prompt:
        print(f"--- RAG prompt ---\n{prompt}\n------------------")
    print(f"Question: {args.question}")
    ask_llm(args, prompt)
    print("Sources (the chunks the answer was given, best first):", *source_lines(sources), sep="\n")
    print(f"[round trip {time.perf_counter() - start:.2f} s]", file=sys.stderr)


if __name__ == "__main__":
    main()
