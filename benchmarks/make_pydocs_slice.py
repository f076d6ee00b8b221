#!/usr/bin/env python3
"""Choose the pages of `make eval-pydocs-slice`: writes them into benchmarks/eval-pydocs-slice.yaml.

  .venv/bin/python benchmarks/make_pydocs_slice.py --seed 0 --chars 2.4e6

The slice is a seeded sample of the pages the spec's questions name (their `source`; qa_dev.jsonl: 107 pages,
4.2 M characters) filling 85% of --chars, plus a seeded sample of the doc set's other pages (the spec's crawl
exclusions) filling the rest: --chars bounds what a first build embeds (2.4 M: about 15 minutes on 2 CPU
cores). The eval asks the questions whose page is in the slice (and every unanswerable one). The same seed and
size give the same pages. Prints the characters of visible main text (../shared/corpus/pydocs/README.md: the
page's div[role=main], else div.body, without script and style, get_text(" "), whitespace folded) of the
question pages and of the sample, and the chunks the spec's base config cuts the slice into (what a build
embeds). Writes only page paths, relative to the html root and sorted, between the yaml's "# BEGIN slice"
and "# END slice" lines, the BEGIN line naming the seed and the size; nothing else of the file changes.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import yaml
from bs4 import BeautifulSoup

from ragserve.config import Config, override
from ragserve.ingest.corpus import documents, read_pages, split
from ragserve.ingest.crawl import excluded

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "benchmarks" / "eval-pydocs-slice.yaml"
BEGIN, END = "# BEGIN slice", "# END slice"
QUESTION_SHARE = 0.85  # of the slice's characters: pages some question names; the rest compete with them
CHUNKS_PER_S = 3.5  # chunks of 1000 characters embedded per second on 2 CPU cores (ONNX Runtime), chunks alone


def main_text_chars(path: Path) -> int:
    """Characters of the page's visible main text, as the corpus README defines it."""
    soup = BeautifulSoup(path.read_bytes(), "lxml")
    main = soup.select_one('div[role="main"]') or soup.select_one("div.body") or soup
    for tag in main(["script", "style"]):
        tag.decompose()
    return len(" ".join(main.get_text(" ").split()))


def doc_pages(html: Path, exclude: list[str]) -> list[str]:
    """Every page of the doc set: its .html files, relative to the html root, less the excluded ones."""
    paths = (p.relative_to(html).as_posix() for p in html.rglob("*.html"))
    return sorted(path for path in paths if not excluded(path, exclude))


def question_pages(paths: list[Path]) -> list[str]:
    """The pages the questions' evidence comes from (unanswerable rows name none)."""
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    return sorted({row["source"] for row in rows if row.get("source")})


def choose(pages: list[str], required: list[str], chars: dict[str, int], budget: int, seed: int) -> list[str]:
    """A seeded sample of the question pages (QUESTION_SHARE of the budget), then of the other pages (the rest),
    each taken in a seeded order while it fits; sorted. The question pages are the long ones: all 107 are 4.2 M
    characters, twice what 15 minutes of embedding on 2 cores affords."""
    missing = sorted(set(required) - set(pages))
    if missing:
        raise SystemExit(f"question pages absent from the doc set: {missing}")
    rng = random.Random(seed)
    chosen = _fill(rng.sample(required, len(required)), chars, int(budget * QUESTION_SHARE))
    others = sorted(set(pages) - set(required))
    chosen += _fill(rng.sample(others, len(others)), chars, budget - sum(chars[p] for p in chosen))
    return sorted(chosen)


def _fill(order: list[str], chars: dict[str, int], budget: int) -> list[str]:
    taken, total = [], 0
    for page in order:
        if total + chars[page] <= budget:
            taken.append(page)
            total += chars[page]
    return taken


def count_chunks(spec: dict, html: Path, slice_pages: list[str]) -> int:
    """The chunks the spec's base config cuts the slice into (the pages read from the folder, not crawled)."""
    base = yaml.safe_load((ROOT / spec["base_config"]).read_text())["handler"]
    corpus = {"corpus.source": str(html), "corpus.include": slice_pages, "corpus.exclude": spec["crawl"]["exclude"]}
    cfg = Config.from_mapping(override(base, corpus), ROOT)
    return len(split(documents(read_pages(cfg.corpus)), cfg.corpus))


def write_slice(spec_path: Path, header: str, slice_pages: list[str]) -> None:
    """Replace the lines from BEGIN to END with the header and the list (a YAML anchor the crawl includes)."""
    lines = spec_path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.startswith(END)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise SystemExit(f"{spec_path}: expected one {BEGIN!r} line, then one {END!r} line")
    block = [f"{BEGIN}: {header}", "slice: &slice", *(f"  - {page}" for page in slice_pages), END]
    spec_path.write_text("\n".join([*lines[: starts[0]], *block, *lines[ends[0] + 1 :]]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample of other pages")
    parser.add_argument("--chars", type=float, default=2.4e6, help="characters of main text in all (the build's cost)")
    parser.add_argument("--spec", type=Path, default=SPEC, help="the yaml to write the list into")
    args = parser.parse_args()
    spec = yaml.safe_load(args.spec.read_text())
    html = Path(spec["site"])
    if not html.is_dir():
        raise SystemExit(f"{html} is absent: apt-get install python3.11-doc (../shared/corpus/pydocs/README.md)")
    required = question_pages([(ROOT / q).resolve() for q in spec["questions"]])
    every = doc_pages(html, spec["crawl"]["exclude"])
    chars = {page: main_text_chars(html / page) for page in every}
    slice_pages = choose(every, required, chars, int(args.chars), args.seed)
    chars = {page: chars[page] for page in slice_pages}
    required = [page for page in required if page in chars]
    asked = sum(chars[page] for page in required)
    chunks = count_chunks(spec, html, slice_pages)
    header = (
        f"make_pydocs_slice.py --seed {args.seed} --chars {args.chars:.2g}: {len(required)} question pages "
        f"+ {len(slice_pages) - len(required)} sampled, {sum(chars.values()) / 1e6:.2f} M characters, {chunks} chunks"
    )
    write_slice(args.spec, header, slice_pages)
    print(f"question pages: {len(required)}, {asked:,} characters of main text")
    print(f"sampled pages: {len(slice_pages) - len(required)}, {sum(chars.values()) - asked:,} characters")
    print(f"slice: {len(slice_pages)} pages, {sum(chars.values()):,} characters, {chunks:,} chunks (base config)")
    print(f"embedding the chunks alone: about {chunks / CHUNKS_PER_S / 60:.0f} min at {CHUNKS_PER_S} chunks/s")
    print(f"wrote {args.spec}")


if __name__ == "__main__":
    main()
