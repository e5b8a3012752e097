"""The guides stay true to the code: links resolve, every `featurelake ...` command they show
parses with the real CLI parser, Python blocks compile, YAML blocks parse, and the module the
"adding a feature group" guide has the reader write loads into the demo repository."""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from featurelake.cli import build_parser
from guides import FENCE, blocks, language, title

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE = re.compile(r"`([^`\n]+)`")
JOBS = ("ingest.py", "export_online.py", "stream.py")
GUIDES = ["concepts.md", "adding-a-feature-group.md", "scheduling.md", "cluster.md", "online-service.md",
          "iam.md", "configuration.md", "reliability.md", "monitoring.md", "streaming.md"]


def rel(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def prose(doc: Path) -> str:
    """The text outside fenced blocks."""
    return FENCE.sub("", doc.read_text())


def shell_commands(code: str) -> list[str]:
    """The simple commands of a shell snippet: continuations joined, comments dropped, split on
    pipes, `&&`, `||` and `;`."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            tokens = list(lexer)
        except ValueError as exc:
            raise AssertionError(f"unparsable shell line {line!r}: {exc}") from None
        command: list[str] = []
        for token in tokens + [";"]:
            if token and set(token) <= set(";&|"):
                if command:
                    out.append(command)
                command = []
            else:
                command.append(token)
    return [" ".join(shlex.quote(t) for t in c) for c in out]


def featurelake_argv(command: str) -> list[str] | None:
    """The arguments after `featurelake` (environment assignments before it allowed), or None."""
    tokens = shlex.split(command)
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        tokens.pop(0)
    if tokens and Path(tokens[0]).name == "featurelake":
        return tokens[1:]
    return None


def job_argv(tokens: list[str]) -> tuple[str, list[str]] | None:
    """(job file name, its arguments) when the tokens run one of the JOBS (jobs/ingest.py, ...)."""
    for i, token in enumerate(tokens):
        if Path(token).name in JOBS and Path(token).parent.name == "jobs":
            return Path(token).name, tokens[i + 1:]
    return None


def job_lines() -> list[tuple[str, str, list[str]]]:
    """(where, job, arguments) of every spark-submit of a job in sh blocks and JSON (EMR steps)."""
    found = []
    for doc in DOCS:
        for info, code, line in blocks(doc):
            where = f"{rel(doc)}:{line}"
            if language(info) in ("sh", "bash", "shell", "console"):
                for command in shell_commands(code):
                    tokens = shlex.split(command)
                    if "spark-submit" in [Path(t).name for t in tokens] and job_argv(tokens):
                        found.append((where, *job_argv(tokens)))  # type: ignore[misc]
            elif language(info) == "json":
                stack = [json.loads(code)]
                while stack:
                    node = stack.pop()
                    if isinstance(node, dict):
                        stack += list(node.values())
                    elif isinstance(node, list):
                        if all(isinstance(v, str) for v in node) and job_argv(node):
                            found.append((where, *job_argv(node)))  # type: ignore[misc]
                        else:
                            stack += node
    return found


def cli_lines() -> list[tuple[str, str]]:
    """(where, command) of every featurelake command in sh blocks and inline code of the docs."""
    found = []
    for doc in DOCS:
        for info, code, line in blocks(doc):
            if language(info) in ("sh", "bash", "shell", "console"):
                found += [(f"{rel(doc)}:{line}", c) for c in shell_commands(code) if featurelake_argv(c) is not None]
        for span in INLINE.findall(prose(doc)):
            if span.startswith("featurelake "):
                found += [(rel(doc), c) for c in shell_commands(span) if featurelake_argv(c) is not None]
    return found


# ---- the tests ------------------------------------------------------------------------------

def test_every_guide_exists_and_the_readme_links_it():
    readme = (ROOT / "README.md").read_text()
    guides = readme.split("## Guides", 1)[1]
    for name in GUIDES:
        assert (ROOT / "docs" / name).is_file(), name
        assert f"(docs/{name})" in guides, f"README.md's Guides section does not link docs/{name}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_relative_links_point_to_existing_files(doc):
    broken = []
    for target in LINK.findall(prose(doc)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor of the same page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{rel(doc)}: broken links {broken}"


def test_every_featurelake_command_in_the_docs_parses():
    commands = cli_lines()
    assert len(commands) > 20, "the docs should show the CLI"
    parser = build_parser()
    seen_verbs = set()
    for where, command in commands:
        argv = featurelake_argv(command)
        assert argv is not None
        if "--help" in argv or "-h" in argv:
            continue
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `{command}` does not parse with featurelake.cli.build_parser()")
        seen_verbs.add(args.verb)
        if args.verb == "catalog":
            assert args.action == "list" or args.name, f"{where}: `{command}` needs a NAME"
    assert {"apply", "ingest", "export", "online", "catalog", "training-set", "validate", "monitor"} <= seen_verbs


def test_every_job_command_in_the_docs_parses(monkeypatch):
    """spark-submit lines: the job's own parser accepts them, and what it hands to the CLI parses."""
    import featurelake.cli

    lines = job_lines()
    assert {job for _, job, _ in lines} == set(JOBS), "the docs should show every job"
    forwarded: list = []
    monkeypatch.setattr(featurelake.cli, "main", lambda argv=None: forwarded.append(argv) or 0)
    parser = build_parser()
    for where, job, argv in lines:
        spec = importlib.util.spec_from_file_location(f"_docs_job_{job[:-3]}", ROOT / "jobs" / job)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        forwarded.clear()
        try:
            assert module.main(argv) == 0
        except SystemExit:
            pytest.fail(f"{where}: `jobs/{job} {' '.join(argv)}` does not parse with the job's parser")
        assert len(forwarded) == 1, f"{where}: jobs/{job} did not call the CLI"
        try:
            parser.parse_args(forwarded[0])
        except SystemExit:
            pytest.fail(f"{where}: jobs/{job} hands the CLI {forwarded[0]}, which does not parse")


def test_a_wrong_command_would_be_caught():
    """The check above is not vacuous: an unknown option or verb exits."""
    parser = build_parser()
    for argv in (["ingest", "--everything"], ["exprt", "customer_txn"], ["online", "get"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_python_blocks_compile_and_yaml_blocks_parse(doc):
    for info, code, line in blocks(doc):
        where = f"{rel(doc)}:{line}"
        if language(info) == "python":
            compile(code, where, "exec")
        elif language(info) in ("yaml", "yml"):
            try:
                yaml.safe_load(code)
            except yaml.YAMLError as exc:
                pytest.fail(f"{where}: YAML block does not parse: {exc}")
        elif language(info) == "json":
            json.loads(code)


def guide_files() -> dict[str, str]:
    """title -> code of the titled blocks of the "adding a feature group" guide."""
    doc = ROOT / "docs" / "adding-a-feature-group.md"
    return {title(info): code for info, code, _ in blocks(doc) if title(info)}


def test_the_feature_group_guide_gives_a_module_and_a_suite():
    files = guide_files()
    assert "features/merchant_activity.py" in files
    assert "features/expectations/merchant_activity.yml" in files


def test_the_guides_module_loads_into_the_demo_repository(tmp_path):
    """What a newcomer gets after copying the guide's files into features/: the repository loads,
    the new group is there, its suite names only its own columns, and the guide's commands name it."""
    from featurelake.repo import load_repository

    repo = tmp_path / "features"
    shutil.copytree(ROOT / "features", repo, ignore=shutil.ignore_patterns("__pycache__"))
    for name, code in guide_files().items():
        target = tmp_path / name
        assert not target.exists(), f"the guide's {name} would overwrite a demo file"
        target.write_text(code)
    loaded = load_repository(repo)
    group = loaded.group("merchant_activity")
    assert group.entity.name == "merchant" and group.online
    assert {"customer_txn", "merchant_risk"} <= set(loaded.groups)
    suite = yaml.safe_load((repo / "expectations" / "merchant_activity.yml").read_text())
    assert loaded.expectations_path(group) == repo / "expectations" / "merchant_activity.yml"
    columns = set(group.columns)
    for expectation in suite["expectations"]:
        assert expectation["type"].startswith("expect_")
        assert expectation["kwargs"]["column"] in columns, expectation
    guide = [c for w, c in cli_lines() if w.startswith("docs/adding-a-feature-group.md")]
    for verb in ("apply", "ingest merchant_activity", "export merchant_activity",
                 "online get merchant_activity --key merchant_id="):
        assert any(f"featurelake {verb}" in c for c in guide), f"the guide does not run `featurelake {verb}`"


def test_the_catalogue_table_in_concepts_lists_every_column():
    """docs/concepts.md's table of catalogue tables matches featurelake.catalog.SCHEMAS exactly."""
    from featurelake.catalog import SCHEMAS

    text = (ROOT / "docs" / "concepts.md").read_text()
    documented = {}
    for line in text.splitlines():
        m = re.match(r"^\| `(\w+)` \| [^|]+ \| (.+) \|$", line)
        if m and m.group(1) in SCHEMAS:
            documented[m.group(1)] = re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", m.group(2)))
    for table, schema in SCHEMAS.items():
        columns = [c.strip().split(" ")[0] for c in re.split(r",\s*(?![^<]*>)", schema)]
        assert documented.get(table) == columns, \
            f"docs/concepts.md: the columns of catalogue table {table!r} differ from SCHEMAS"


def test_every_test_the_reliability_page_cites_exists():
    """docs/reliability.md proves each guarantee by a test name: a renamed or removed test must
    not leave a guarantee pointing at nothing."""
    cited = set(re.findall(r"\b(test_\w+)(?!\.py)\b", (ROOT / "docs" / "reliability.md").read_text()))
    defined = {m for p in (ROOT / "tests").rglob("test_*.py")
               for m in re.findall(r"^def (test_\w+)", p.read_text(), re.M)}
    modules = {p.stem for p in (ROOT / "tests").rglob("test_*.py")}
    assert cited and not cited - defined - modules, sorted(cited - defined - modules)


def test_the_guide_s_other_kinds_of_source_declare_valid_sources():
    """Each worked example under "Other kinds of source" runs as printed and declares what it says."""
    import sys

    from featurelake.definitions import Source

    text = (ROOT / "docs" / "adding-a-feature-group.md").read_text()
    part = text[text.index("### Other kinds of source"):text.index("\n## 2.")]
    blocks = re.findall(r"```python\n(.*?)```", part, flags=re.S)
    assert len(blocks) == 5
    sys.path.insert(0, str(ROOT / "features"))  # the examples import the demo's entities
    try:
        scope: dict = {}
        for code in blocks:
            exec(compile(code, "adding-a-feature-group.md", "exec"), scope)
    finally:
        sys.path.remove(str(ROOT / "features"))
    kinds = {name: type(v).__name__ for name, v in scope.items() if isinstance(v, Source)}
    assert kinds == {"trips": "S3Source", "payouts": "S3Source", "access_log": "S3Source", "orders": "DeltaSource",
                     "txn_rows": "DeltaSource", "rates": "HttpSource", "payment_events": "KafkaSource"}
    assert scope["access_log"].pattern and scope["app_access"].source is scope["access_log"]
