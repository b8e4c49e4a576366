"""Loading workflow documents: formats, limits, hostile YAML, overrides, schema, examples."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import msgspec
import pytest

from workflows import (
    Problem,
    Workflow,
    WorkflowInvalid,
    apply_overrides,
    check_workflow,
    load_workflow,
    load_workflow_file,
    parse_document,
    validate_data,
    workflow_json_schema,
    yaml_safe,
)
from workflows.spec import ExtractLinksNode, ExtractNode, Field, FilterNode, ScriptNode

REPO = Path(__file__).resolve().parents[2]

# A full workflow: the top-level sections at their defaults, every node type, most field options.
FULL = """\
name: aqua-shop
start_urls: [http://127.0.0.1:8765/]
engine: browser
max_depth: 3
max_pages: 0
scope:
  allowed_domains: []
  include: []
  exclude: []
  ignore_query_params: []
politeness:
  requests_per_second: 2.0
  burst: 1
  delay_ms: 0
  max_concurrency_per_host: 2
  respect_robots_txt: true
fetch:
  timeout_s: 30
  user_agent: "trawl/<version> (+contact)"
  wait_until: domcontentloaded
  block_resources: [image, font, media]
retries:
  max_attempts: 3
  backoff_s: 1.0
start_phase: categories
phases:
  - name: categories
    nodes:
      - type: extract_links
        selector: "nav.categories a"
        attr: href
        marker: category
        limit: 50
    transitions:
      - when: {marker: category}
        to: listing
  - name: listing
    nodes:
      - type: extract_links
        selector: "ul.products a.product"
        marker: product
      - type: extract_links
        selector: "a[rel=next]"
        marker: page
      - type: filter
        markers: [product, page]
        max_depth: 3
        exclude: ["/discontinued/"]
    transitions:
      - when: {marker: product}
        to: product
  - name: product
    engine: browser
    nodes:
      - type: extract
        fields:
          name: "h1"
          price: {css: ".price", type: float, regex: '[0-9]+(\\.[0-9]+)?'}
          sku: {css: "[data-sku]", attr: data-sku}
          images: {css: ".gallery img", attr: src, multiple: true, absolute_url: true}
          title_xpath: {xpath: "//title/text()"}
          specs:
            css: "table.specs tr"
            multiple: true
            fields: {key: "th", value: "td"}
            as: object
          in_stock: {css: ".stock", type: bool, default: false}
      - type: script
        code: "() => window.__PRODUCT__.reviews"
        as: reviews
        timeout_s: 5
"""

MINIMAL = "name: tiny\nstart_urls: [http://example.com/]\nphases: [{name: a}]\n"


def problems(text: str | bytes, **kwargs: object) -> list[Problem]:
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(text, **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def only_problem(text: str | bytes, **kwargs: object) -> Problem:
    found = problems(text, **kwargs)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(params=["libyaml", "pure-python"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test with each YAML parser: libyaml when installed, and the fallback."""
    use_libyaml = request.param == "libyaml"
    if use_libyaml and not yaml_safe._HAS_LIBYAML:
        pytest.skip("libyaml is not installed")
    monkeypatch.setattr(yaml_safe, "_HAS_LIBYAML", use_libyaml)


# --- the documented example ---------------------------------------------------------------


@pytest.mark.usefixtures("yaml_parser")
def test_the_documented_example_loads_with_its_values() -> None:
    workflow = load_workflow(FULL, filename="aqua.yaml")
    assert workflow.name == "aqua-shop"
    assert workflow.first_phase == "categories"
    assert [p.name for p in workflow.phases] == ["categories", "listing", "product"]
    links = workflow.phases[0].nodes[0]
    assert links == ExtractLinksNode(selector="nav.categories a", marker="category", limit=50)
    assert isinstance(workflow.phases[1].nodes[2], FilterNode)
    extract, script = workflow.phases[2].nodes
    assert isinstance(extract, ExtractNode)
    assert extract.fields["name"] == "h1"
    specs = extract.fields["specs"]
    assert isinstance(specs, Field)
    assert specs.as_ == "object"
    assert specs.fields == {"key": "th", "value": "td"}
    assert isinstance(script, ScriptNode)
    assert (script.as_, script.emit, script.timeout_s) == ("reviews", "value", 5.0)
    assert workflow.fetch.timeout_s == 30.0


def test_defaults_fill_what_is_left_out() -> None:
    workflow = load_workflow(MINIMAL)
    assert (workflow.engine, workflow.max_depth, workflow.max_pages) == ("browser", 3, 0)
    assert workflow.politeness.requests_per_second == 2.0
    assert workflow.first_phase == "a"


def test_json_reads_the_same_as_yaml() -> None:
    from_yaml = load_workflow(FULL)
    encoded = msgspec.json.encode(from_yaml)
    assert load_workflow(encoded, fmt="json") == from_yaml
    assert load_workflow(encoded.decode(), filename="wf.json") == from_yaml
    # YAML reads JSON too, so a document of unknown format may be either.
    assert load_workflow(encoded) == from_yaml


def test_file_loading_picks_the_format_from_the_extension(tmp_path: Path) -> None:
    as_json = tmp_path / "wf.json"
    as_json.write_bytes(msgspec.json.encode(load_workflow(MINIMAL)))
    assert load_workflow_file(as_json).name == "tiny"
    as_yaml = tmp_path / "wf.yml"
    as_yaml.write_text(MINIMAL)
    assert load_workflow_file(as_yaml).name == "tiny"


def test_file_problems_carry_the_file_name_but_paths_do_not(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL + "max_depth: -1\n")
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow_file(path)
    assert caught.value.source == str(path)
    assert caught.value.problems == [Problem("max_depth", "must be >= 0")]
    assert str(caught.value) == f"{path}: 1 problem\nmax_depth: must be >= 0"


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_workflow_file(tmp_path / "nope.yaml")


# --- limits and hostile input ----------------------------------------------------------------


def test_size_limit() -> None:
    assert only_problem(MINIMAL, max_bytes=20).message == (
        "document is larger than the limit of 20 bytes"
    )
    padded = MINIMAL + "#" * (1024 * 1024)
    assert "larger than the limit of 1048576 bytes" in only_problem(padded).message


def test_file_size_limit_reads_no_more_than_needed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(MINIMAL + "#" * 5000)
    with pytest.raises(WorkflowInvalid, match="larger than the limit of 1000 bytes"):
        load_workflow_file(path, max_bytes=1000)


@pytest.mark.usefixtures("yaml_parser")
def test_billion_laughs_is_rejected_before_expansion() -> None:
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
        for i in range(9)
    )
    assert only_problem(bomb) == Problem(
        "", "YAML error at line 1, column 4: anchors (&name) are not allowed"
    )


@pytest.mark.usefixtures("yaml_parser")
def test_aliases_are_rejected() -> None:
    assert "aliases (*name) are not allowed" in only_problem("a: *nowhere\n").message


@pytest.mark.usefixtures("yaml_parser")
def test_duplicate_keys_are_errors_with_their_path() -> None:
    text = (
        "name: dup\nstart_urls: [http://example.com/]\n"
        "phases:\n  - name: a\n    nodes:\n"
        "      - type: extract_links\n        selector: a\n        selector: b\n"
        "name: dup2\n"
    )
    assert problems(text) == [
        Problem("name", "duplicate key 'name' (first at line 1, again at line 9)"),
        Problem(
            "phases[0].nodes[0].selector",
            "duplicate key 'selector' (first at line 7, again at line 8)",
        ),
    ]


def test_duplicate_keys_in_json_are_errors_too() -> None:
    text = (
        '{"name": "xx", "start_urls": ["http://example.com/"],'
        ' "phases": [{"name": "a", "name": "b"}], "name": "yy"}'
    )
    assert problems(text, fmt="json") == [
        Problem("name", "duplicate key 'name'"),
        Problem("phases[0].name", "duplicate key 'name'"),
    ]


def test_duplicate_keys_are_reported_with_every_other_problem() -> None:
    text = (
        "name: dup\nstart_urls: [http://example.com/]\nmax_depth: -1\n"
        "phases:\n  - name: a\n    nodes:\n"
        "      - {type: extract_links, selector: 'a[', marker: m}\n"
        "    transitions: [{when: {marker: m}, to: b}]\n"
        "  - name: b\n    name: c\n"
    )
    assert [str(p) for p in problems(text)] == [
        "max_depth: must be >= 0",
        "phases[0].nodes[0].selector: invalid CSS selector 'a[': expected an attribute name "
        "at position 2 (the end)",
        "phases[1].name: duplicate key 'name' (first at line 9, again at line 10)",
    ]  # and no "unknown phase 'b'": which name phases[1] has is in doubt


@pytest.mark.usefixtures("yaml_parser")
def test_yaml_syntax_error_names_line_and_column() -> None:
    text = "name: x\nphases:\n  - name: a\n   nodes: []\n"
    problem = only_problem(text)
    assert problem.path == ""
    assert problem.message.startswith("YAML error at line 4, column 4:")


def test_json_syntax_error_names_line_and_column() -> None:
    text = '{\n  "name": "x",\n  "phases": [1,]\n}'
    assert only_problem(text, fmt="json") == Problem(
        "", "JSON error at line 3, column 16: trailing comma in array"
    )


@pytest.mark.usefixtures("yaml_parser")
def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep = "a: " + "[" * 5000 + "]" * 5000
    assert "nested deeper than 64 levels" in only_problem(deep).message
    deep_json = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    assert "nested deeper than 64 levels" in only_problem(deep_json, fmt="json").message


@pytest.mark.usefixtures("yaml_parser")
@pytest.mark.parametrize("levels", [65, 999, 1001, 1200])
def test_deep_nesting_message_is_the_same_at_any_depth(levels: int) -> None:
    # libyaml has a limit of its own (1000 levels, in some releases): what the user reads
    # must not depend on which parser, or which release of it, is installed.
    flow = "a: " + "[" * levels + "]" * levels
    block = "".join(" " * i + f"k{i}:\n" for i in range(levels)) + " " * levels + "v: 1\n"
    for text in (flow, block):
        problem = only_problem(text)
        assert problem.message.startswith("YAML error at line ")
        assert problem.message.endswith(": nested deeper than 64 levels")


@pytest.mark.usefixtures("yaml_parser")
def test_python_tags_do_not_construct_objects() -> None:
    text = "name: !!python/object/apply:os.system ['true']\n"
    assert "could not determine a constructor" in only_problem(text).message


@pytest.mark.usefixtures("yaml_parser")
def test_more_than_one_document_is_an_error() -> None:
    assert "expected a single document" in only_problem(MINIMAL + "---\n" + MINIMAL).message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "document is empty"),
        ("# only a comment\n", "document is empty"),
        ("- a\n- b\n", "a workflow must be a mapping, got a list"),
        ("just text\n", "a workflow must be a mapping, got a string"),
        ("42\n", "a workflow must be a mapping, got a number"),
    ],
)
@pytest.mark.usefixtures("yaml_parser")
def test_top_level_must_be_a_mapping(text: str, message: str) -> None:
    assert only_problem(text) == Problem("", message)


@pytest.mark.usefixtures("yaml_parser")
def test_control_characters_are_located() -> None:
    assert only_problem('name: x\nb: "a\x01"\n').message.startswith(
        "YAML error at line 2, column 6:"
    )


def test_bytes_must_be_utf8() -> None:
    assert "not UTF-8" in only_problem(b"name: \xff\xfe\n").message
    assert load_workflow(b"\xef\xbb\xbf" + MINIMAL.encode()).name == "tiny"  # BOM is fine


@pytest.mark.usefixtures("yaml_parser")
def test_yaml_scalars_follow_the_core_schema() -> None:
    data = parse_document("a: on\nb: 010\nc: 1:30\nd: 2024-01-01\ne: 0x1F\nf: 1e3\ng: ~\n")
    assert data == {
        "a": "on",
        "b": 10,
        "c": "1:30",
        "d": "2024-01-01",
        "e": 31,
        "f": 1000.0,
        "g": None,
    }


# --- validate_data and check_workflow --------------------------------------------------------


def test_validate_data_accepts_parsed_data_from_anywhere() -> None:
    data = json.loads(msgspec.json.encode(load_workflow(MINIMAL)))
    assert validate_data(data).name == "tiny"
    with pytest.raises(WorkflowInvalid) as caught:
        validate_data(["not", "a", "mapping"])
    assert caught.value.problems == [Problem("", "expected a mapping, got a list")]


def test_check_workflow_judges_workflows_built_in_code() -> None:
    product = msgspec.structs.replace(load_workflow(FULL).phases[2], engine=None)
    workflow = Workflow(
        name="coded", start_urls=["http://example.com/"], engine="http", phases=[product]
    )
    assert [p.path for p in check_workflow(workflow)] == ["phases[0].nodes[1]"]


# --- overrides ----------------------------------------------------------------------------


def test_overrides_set_dotted_and_indexed_paths_as_yaml_scalars() -> None:
    data = parse_document(FULL)
    result = apply_overrides(
        data,
        [
            "politeness.requests_per_second=5",
            "max_depth=2",
            "phases[0].engine=http",
            "politeness.respect_robots_txt=false",
            "fetch.user_agent=my bot: 1.0",
            "scope.allowed_domains=[127.0.0.1, example.com]",
            "retries.backoff_s=0.5",
        ],
    )
    assert result["politeness"]["requests_per_second"] == 5
    assert result["max_depth"] == 2
    assert result["phases"][0]["engine"] == "http"
    assert result["politeness"]["respect_robots_txt"] is False
    assert result["fetch"]["user_agent"] == "my bot: 1.0"
    assert result["scope"]["allowed_domains"] == ["127.0.0.1", "example.com"]
    assert data["max_depth"] == 3  # the input is left alone


def test_overrides_create_missing_mappings() -> None:
    data = parse_document(MINIMAL)
    assert apply_overrides(data, ["politeness.burst=3"])["politeness"] == {"burst": 3}


def test_bad_override_paths_are_all_reported() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        apply_overrides(
            parse_document(MINIMAL),
            ["phases[3].engine=http", "name.first=x", "max_depth", "a..b=1", "scope[0]=x"],
        )
    assert caught.value.problems == [
        Problem("phases[3].engine", "--set: phases has 1 items, no index 3"),
        Problem("name.first", "--set: name is not a mapping"),
        Problem(
            "",
            "--set 'max_depth': expected key=value, e.g. max_depth=2 or phases[page].engine=http",
        ),
        Problem("", "--set 'a..b=1': bad path 'a..b': expected a key after 'a.', got '.'"),
        Problem("scope[0]", "--set: scope is not a list"),
    ]


def test_overrides_are_validated_like_the_file() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(MINIMAL, filename="wf.yaml", overrides=["max_depth=-1", "politness.burst=2"])
    assert caught.value.source == "wf.yaml"
    assert [p.path for p in caught.value.problems] == ["max_depth", "politness"]
    assert load_workflow(MINIMAL, overrides=["max_depth=7"]).max_depth == 7


# --- schema and errors -----------------------------------------------------------------------


def test_json_schema_describes_the_file_format() -> None:
    schema = workflow_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Trawl workflow"
    defs = schema["$defs"]
    assert "as" in defs["Field"]["properties"]
    assert "as" in defs["ScriptNode"]["properties"]
    assert "as_" not in json.dumps(schema)
    assert defs["Workflow"]["additionalProperties"] is False
    assert set(defs["Workflow"]["required"]) == {"name", "phases"}  # or sitemaps for start_urls


def test_problem_and_error_text() -> None:
    assert str(Problem("phases[0].name", "required key missing")) == (
        "phases[0].name: required key missing"
    )
    assert str(Problem("", "document is empty")) == "document is empty"
    error = WorkflowInvalid([Problem("a", "x"), Problem("b", "y")], source="wf.yaml")
    assert error.summary() == "wf.yaml: 2 problems"
    assert str(error) == "wf.yaml: 2 problems\na: x\nb: y"
    assert WorkflowInvalid([Problem("", "z")]).summary() == "1 problem"
    copied = pickle.loads(pickle.dumps(error))
    assert (copied.problems, copied.source) == (error.problems, "wf.yaml")


# --- examples ----------------------------------------------------------------------------------


def example_workflows() -> list[Path]:
    return sorted(
        path
        for path in (REPO / "examples").glob("**/*.yaml")
        if "malformed" not in path.relative_to(REPO / "examples").parts
    )


def test_there_are_examples() -> None:
    assert REPO / "examples" / "quickstart.yaml" in example_workflows()


@pytest.mark.parametrize(
    "path", example_workflows(), ids=lambda p: str(p.relative_to(REPO / "examples"))
)
def test_every_example_workflow_is_valid(path: Path) -> None:
    load_workflow_file(path)
