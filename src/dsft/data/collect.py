"""`dsft data collect`: the guide's collection sources (7.2) turned into conversations.

- a folder of code components: one "write component X" example per component file;
- Markdown style guides: every section (a heading and its body) becomes a question/answer pair;
- HTML pages from files or URLs: each page's main text becomes a "summarise this page" pair.

Every example records its source in `metadata.source`. A source that fails (a missing file, a
network error, a page with no text) is reported in `problems` and never stops the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

COMPONENT_SUFFIXES = {".tsx": "tsx", ".jsx": "jsx", ".ts": "ts", ".js": "js", ".vue": "vue", ".svelte": "svelte",
                      ".py": "python"}
MAX_SOURCE_CHARS = 20_000  # longer components/pages are reported, never silently cut


@dataclass
class Collected:
    examples: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def collect(components: Path | None = None, style_guides: list[Path] = (), html: list[str] = (),
            timeout: float = 20.0) -> Collected:
    out = Collected()
    if components is not None:
        from_components(Path(components), out)
    for guide in style_guides:
        from_style_guide(Path(guide), out)
    for source in html:
        from_html(source, out, timeout)
    return out


def _example(system: str, user: str, assistant: str, source: str, task: str) -> dict:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": assistant}],
            "metadata": {"source": source, "task_type": task}}


def from_components(folder: Path, out: Collected) -> None:
    if not folder.is_dir():
        out.problems.append(f"{folder}: not a folder of components")
        return
    files = sorted(p for p in folder.rglob("*") if p.suffix in COMPONENT_SUFFIXES and p.is_file())
    if not files:
        out.problems.append(f"{folder}: no component files ({', '.join(COMPONENT_SUFFIXES)})")
    for path in files:
        try:
            code = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            out.problems.append(f"{path}: cannot read ({e})")
            continue
        if not code.strip():
            out.problems.append(f"{path}: empty file")
            continue
        if len(code) > MAX_SOURCE_CHARS:
            out.problems.append(f"{path}: {len(code)} characters, over the {MAX_SOURCE_CHARS} limit; split it")
            continue
        name = path.stem if path.stem.lower() != "index" else path.parent.name
        lang = COMPONENT_SUFFIXES[path.suffix]
        out.examples.append(_example(
            "You are a front-end engineer who writes components in this codebase's style.",
            f"Write the {name} component ({lang}).", f"```{lang}\n{code.rstrip()}\n```",
            str(path), "component_generation"))


def from_style_guide(path: Path, out: Collected) -> None:
    from markdown_it import MarkdownIt

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        out.problems.append(f"{path}: cannot read ({e})")
        return
    lines = text.splitlines()
    tokens = MarkdownIt().parse(text)
    heads = [(t.map[0], int(t.tag[1:]), tokens[k + 1].content) for k, t in enumerate(tokens)
             if t.type == "heading_open" and t.map]
    title = next((h for _, level, h in heads if level == 1), path.stem)
    found = 0
    for k, (start, level, heading) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(lines)  # subsections are their own pairs
        body = "\n".join(lines[start + 1:end]).strip()
        if level == 1 or not body:
            continue
        found += 1
        out.examples.append(_example(
            f"You answer questions about the {title} style guide.",
            f"What does the style guide say about {heading}?", body,
            f"{path}#{heading}", "style_guide"))
    if not found:
        out.problems.append(f"{path}: no section with a heading (##) and a body")


def from_html(source: str, out: Collected, timeout: float) -> None:
    from bs4 import BeautifulSoup

    if source.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(source, timeout=timeout, follow_redirects=True)
            response.raise_for_status()
            html = response.text
        except httpx.HTTPError as e:
            out.problems.append(f"{source}: {type(e).__name__}: {e}")
            return
    else:
        try:
            html = Path(source).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            out.problems.append(f"{source}: cannot read ({e.strerror})")
            return
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "header", "noscript", "svg"]):
        tag.decompose()
    title = (soup.title.string or "").strip() if soup.title and soup.title.string else Path(source).stem
    main = soup.find("main") or soup.find("article") or soup.body or soup
    paragraphs = [" ".join(p.get_text(" ").split()) for p in main.find_all(["h1", "h2", "h3", "p", "li", "pre"])]
    body = "\n".join(p for p in paragraphs if p)
    if not body:
        out.problems.append(f"{source}: no text found")
        return
    if len(body) > MAX_SOURCE_CHARS:
        out.problems.append(f"{source}: {len(body)} characters of text, over the {MAX_SOURCE_CHARS} limit")
        return
    out.examples.append(_example(
        "You know the content of the LightDom documentation pages.",
        f"What does the page \"{title}\" say?", body, source, "web_page"))
