"""Making data: the scenario generator and the collection sources."""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter

import pytest
from conftest import read_jsonl, run_dsft

from dsft.data.collect import collect
from dsft.data.generate import fill, generate, load_scenarios
from dsft.data.validate import validate
from dsft.errors import UserError


def test_generate_mixes_kinds_validates_and_is_deterministic(tmp_path):
    spec = load_scenarios()
    rows = generate(spec, 200, seed=5)
    assert len(rows) == 200 and rows == generate(spec, 200, seed=5)
    kinds = Counter(r["metadata"]["kind"] for r in rows)
    assert set(kinds) == {"single_tool", "multi_tool", "error_recovery", "out_of_domain"}
    names = {c["function"]["name"] for r in rows for m in r["messages"] for c in m.get("tool_calls") or ()}
    assert names == {"mineAttribute", "generateSchema", "createWorkflow", "analyze_seo", "createMiningCampaign"}
    ood = next(r for r in rows if r["metadata"]["kind"] == "out_of_domain")
    assert [m["role"] for m in ood["messages"]] == ["system", "user", "assistant"]
    err = next(r for r in rows if r["metadata"]["kind"] == "error_recovery")
    assert '"success":false' in err["messages"][3]["content"]
    assert "mineAttribute: Extract specific data" in rows[0]["messages"][0]["content"]
    path = tmp_path / "g.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = validate([path])
    assert result.exit_code == 0 and result.tally.duplicates == 0


def test_fill_keeps_types_and_reads_fields():
    slots = {"a": {"k": ["x", "y"]}, "site": "s.com"}
    assert fill("{a.k}", slots, "t") == ["x", "y"]
    assert fill({"url": "https://{site}", "n": ["{a.k}"]}, slots, "t") == {"url": "https://s.com", "n": [["x", "y"]]}
    with pytest.raises(UserError, match="unknown slot"):
        fill("{missing}", slots, "t")


def test_scenario_with_schema_breaking_arguments_is_named(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "scenarios:\n  - name: broken\n    requests: ['Audit {site}']\n    slots: {site: [a.com]}\n"
        "    calls: [{name: analyze_seo, arguments: {address: '{site}'}}]\n    answer: done\n")
    with pytest.raises(UserError, match="broken.*arguments_schema_mismatch"):
        generate(load_scenarios(tmp_path / "s.yaml"), 3)
    proc = run_dsft("data", "generate", "--scenarios", tmp_path / "s.yaml", "-n", "3", check=2)
    assert "broken" in proc.stderr


def test_cli_generate_writes_jsonl(tmp_path):
    run_dsft("data", "generate", "-n", "25", "--seed", "2", "--out", tmp_path / "g.jsonl", check=0)
    assert len(read_jsonl(tmp_path / "g.jsonl")) == 25


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path != "/docs":
            self.send_error(404)
            return
        body = b"<html><head><title>Mining docs</title><script>x()</script></head><body><nav>menu</nav>" \
               b"<main><h1>Mining</h1><p>Campaigns extract attributes on a schedule.</p></main></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_collect_components_style_guide_and_html(tmp_path, site):
    comp = tmp_path / "components"
    (comp / "Button").mkdir(parents=True)
    (comp / "Button" / "index.tsx").write_text("export const Button = () => <button />;\n")
    (comp / "Card.jsx").write_text("export function Card() { return <div className='card' />; }\n")
    (comp / "README.md").write_text("not a component")
    guide = tmp_path / "style.md"
    guide.write_text("# House style\n\n## Naming\nUse PascalCase for components.\n\n```sh\n# not a heading\n```\n\n"
                     "## Spacing\nUse the 4px grid.\n\n### Margins\nNever negative.\n")
    page = tmp_path / "page.html"
    page.write_text("<html><title>SEO</title><body><p>Titles under 60 characters.</p></body></html>")
    out = collect(components=comp, style_guides=[guide],
                  html=[str(page), f"{site}/docs", f"{site}/missing", "http://127.0.0.1:9/down"], timeout=5)
    users = [e["messages"][1]["content"] for e in out.examples]
    assert "Write the Button component (tsx)." in users and "Write the Card component (jsx)." in users
    naming = next(e for e in out.examples if e["messages"][1]["content"].endswith("about Naming?"))
    assert "# not a heading" in naming["messages"][2]["content"]
    assert any(u.endswith("about Margins?") for u in users)
    web = next(e for e in out.examples if e["metadata"]["source"] == f"{site}/docs")
    assert "Campaigns extract attributes" in web["messages"][2]["content"] and "menu" not in web["messages"][2]["content"]
    assert len(out.problems) == 2 and any("404" in p for p in out.problems)
    assert all(e["metadata"]["source"] for e in out.examples)


def test_cli_collect_reports_skipped_sources(tmp_path):
    proc = run_dsft("data", "collect", "--html", tmp_path / "nope.html", "--out", tmp_path / "c.jsonl", check=0)
    assert "skipped" in proc.stderr
    run_dsft("data", "collect", check=2)
