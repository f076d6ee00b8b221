from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from transformers import AutoTokenizer

from ragserve.config import CorpusConfig
from ragserve.index.builder import content_sha256
from ragserve.ingest.corpus import CorpusError, load_documents, read_pages, split

DOCS = Path(__file__).resolve().parent / "fixtures" / "docs"


def test_local_folder_gives_sorted_documents_with_relative_paths_and_titles() -> None:
    documents = load_documents(CorpusConfig(source=str(DOCS)))
    assert [d.metadata["source"] for d in documents] == ["docs/notes.txt", "docs/tokens.md", "docs/workers.md"]
    assert [d.metadata["title"] for d in documents] == ["notes", "Rotating tokens", "Workers"]


def test_crawled_site_becomes_documents_with_url_and_title(site_url: str) -> None:
    documents = load_documents(CorpusConfig(source=site_url + "/guide/", max_depth=1))
    fetched = documents[0].metadata.pop("fetched")  # when the text was downloaded, ISO 8601 UTC
    assert documents[0].metadata == {"source": site_url + "/guide", "title": "The Guide"}
    assert fetched.endswith("+00:00") and fetched[:4].isdigit()


def test_split_keeps_source_title_and_position_and_overlaps() -> None:
    text = " ".join(f"word{i}" for i in range(300))
    chunks = split(
        [Document(text, metadata={"source": "s", "title": "t"})],
        CorpusConfig(chunk_size=200, chunk_overlap=50, split="plain", chunk_header=False),
    )
    assert len(chunks) > 5
    assert all(len(c.page_content) <= 200 for c in chunks)
    assert [c.metadata["chunk"] for c in chunks] == list(range(len(chunks)))
    assert chunks[0].page_content.split()[-1] in chunks[1].page_content  # overlap carries words over


@pytest.mark.model
def test_token_chunks_fit_the_embedding_model(model_dir: Path) -> None:
    text = "The Llama 3.1 tokenizer has 128,256 entries; GQA shares keys. " * 60
    cfg = CorpusConfig(chunk_size=64, chunk_overlap=8, chunk_unit="tokens", split="plain")
    chunks = split([Document(text, metadata={"source": "s", "title": "t"})], cfg, str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(tokenizer.tokenize(c.page_content)) for c in chunks]
    assert len(chunks) > 5 and max(lengths) <= 64 and min(lengths) > 32


def test_missing_or_empty_local_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_documents(CorpusConfig(source=str(tmp_path / "nope")))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(CorpusError, match="no .md/.txt/.html"):
        load_documents(CorpusConfig(source=str(tmp_path)))


def test_a_file_edit_changes_its_content_hash_and_no_other(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\nfirst")
    (tmp_path / "b.md").write_text("# B\nsame")
    cfg = CorpusConfig(source=str(tmp_path))
    before = {page.url: content_sha256(page) for page in read_pages(cfg)}
    (tmp_path / "a.md").write_text("# A\nsecond")
    after = {page.url: content_sha256(page) for page in read_pages(cfg)}
    name = tmp_path.name
    assert after[f"{name}/a.md"] != before[f"{name}/a.md"] and after[f"{name}/b.md"] == before[f"{name}/b.md"]


def test_sections_split_at_headings_and_chunks_carry_title_and_section() -> None:
    text = "# Guide\nIntro text.\n## Install\nRun make install.\n## Serve\nRun make serve.\n### Ports\nPort 8080."
    cfg = CorpusConfig(chunk_size=200, split="sections", chunk_header=True)
    chunks = split([Document(text, metadata={"source": "s", "title": "Guide"})], cfg)
    assert [c.page_content for c in chunks] == [
        "Guide\nIntro text.",
        "Guide > Install\nRun make install.",
        "Guide > Serve\nRun make serve.",
        "Guide > Serve > Ports\nPort 8080.",
    ]


def test_html_pages_become_markdown_like_text_without_byline(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        "<html><head><title>T</title></head><body><article><div class='blog-metadata'>By someone</div>"
        "<h2>Part</h2><p>One <a href='x'>linked</a> sentence.</p><table><tr><td>a</td><td>b</td></tr></table>"
        "</article></body></html>"
    )
    text = load_documents(CorpusConfig(source=str(tmp_path)))[0].page_content
    assert text == "## Part\nOne linked sentence.\na | b |"


def test_exclude_skips_matching_files_of_a_local_folder(tmp_path: Path) -> None:
    """corpus.exclude: a Sphinx build's _sources/ copies, genindex and search pages stay out."""
    for name in ("library/json.html", "_sources/library/json.rst.txt", "genindex-A.html", "search.html"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("<html><body><main><p>text of " + name + "</p></main></body></html>")
    cfg = CorpusConfig(source=str(tmp_path), exclude=["_sources/*", "genindex*", "search.html"])
    assert [page.url for page in read_pages(cfg)] == [f"{tmp_path.name}/library/json.html"]
    assert len(read_pages(CorpusConfig(source=str(tmp_path)))) == 4


def test_exclude_keeps_the_crawler_off_matching_paths(site_url: str) -> None:
    every = {page.url for page in read_pages(CorpusConfig(source=site_url + "/", max_depth=3))}
    kept = {page.url for page in read_pages(CorpusConfig(source=site_url + "/", max_depth=3, exclude=["guide/*"]))}
    assert any("/guide/" in url for url in every) and kept == {url for url in every if "/guide/" not in url}


def test_include_reads_only_matching_files_of_a_local_folder_after_exclude(tmp_path: Path) -> None:
    """corpus.include: a slice of a doc set (benchmarks/eval-pydocs-slice.yaml) read from its folder."""
    for name in ("library/json.html", "library/os.html", "tutorial/index.html", "_sources/library/json.rst.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("<html><body><main><p>text of " + name + "</p></main></body></html>")
    cfg = CorpusConfig(source=str(tmp_path), include=["library/*", "tutorial/index.html"], exclude=["*/os.html"])
    urls = [page.url.removeprefix(tmp_path.name + "/") for page in read_pages(cfg)]
    assert urls == ["library/json.html", "tutorial/index.html"]
    with pytest.raises(CorpusError, match="corpus.include"):
        read_pages(CorpusConfig(source=str(tmp_path), include=["nothing/*"]))


def test_include_keeps_crawled_pages_of_matching_paths_only(site_url: str) -> None:
    every = [page.url for page in read_pages(CorpusConfig(source=site_url + "/", max_depth=3))]
    kept = [page.url for page in read_pages(CorpusConfig(source=site_url + "/", max_depth=3, include=["guide/d*"]))]
    assert kept == [url for url in every if "/guide/d" in url] and len(kept) == 2  # dogs, deep (via /guide)


@pytest.mark.parametrize("include", ["guide/*", [1], [["a"]]])
def test_include_must_be_a_list_of_strings(include: object) -> None:
    from ragserve.config import Config, ConfigError

    with pytest.raises(ConfigError, match="handler.corpus.include must be list"):
        Config.from_mapping({"corpus": {"include": include}}, ".")
